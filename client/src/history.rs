//! The interactive REPL's history file (`~/.paxoskv_client_history`).
//!
//! Loaded once at start; replaced after each new line, so a line typed is
//! kept whatever ends the client later. A replacement is written beside the
//! file, synced, then renamed over it: the file is never left half written.
//! A file that exists but cannot be read (not UTF-8, unreadable) is left
//! alone for the whole session rather than overwritten.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

/// Held while a history file is being replaced.
static SAVING: Mutex<()> = Mutex::new(());

/// A history file that can be read (or does not exist yet).
#[derive(Debug)]
pub struct HistoryFile {
    path: PathBuf,
}

/// The history file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// It exists but cannot be loaded; it is left as it is.
    #[error("cannot read the history file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ReadlineError,
    },
    /// The new version could not be put in place; the old one is intact.
    #[error("cannot save the history file {}: {source}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ReadlineError,
    },
}

impl HistoryFile {
    /// Loads `path` into the editor's history (a missing file is an empty
    /// history).
    pub fn load(path: PathBuf, editor: &mut DefaultEditor) -> Result<HistoryFile, HistoryError> {
        match editor.load_history(&path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(HistoryError::Read { path, source }),
        }
        Ok(HistoryFile { path })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with the editor's history. Call it after adding an
    /// entry (the editor writes nothing when no entry is new).
    pub fn save(&self, editor: &mut DefaultEditor) -> Result<(), HistoryError> {
        let _saving = SAVING.lock();
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let result = editor.save_history(&tmp).and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &self.path))
                .map_err(ReadlineError::Io)
        });
        result.map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            HistoryError::Save {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Waits until no history file is being replaced and keeps it so: for a
/// signal handler about to exit the process.
pub fn no_save_in_progress() -> MutexGuard<'static, ()> {
    SAVING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("paxoskv-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn each_save_replaces_the_file_with_every_entry() {
        let dir = scratch("save");
        let path = dir.join("h");
        std::fs::write(&path, "#V2\nOLD 1\n").unwrap();
        let mut editor = DefaultEditor::new().unwrap();
        let file = HistoryFile::load(path.clone(), &mut editor).unwrap();
        for line in ["PUT a 1", "GET a"] {
            assert!(editor.add_history_entry(line).unwrap());
            file.save(&mut editor).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "#V2\nOLD 1\nPUT a 1\nGET a\n"
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["h"], "no temporary file left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_file_is_an_empty_history_and_an_unreadable_one_an_error() {
        let dir = scratch("load");
        let mut editor = DefaultEditor::new().unwrap();
        assert!(HistoryFile::load(dir.join("none"), &mut editor).is_ok());
        let damaged = dir.join("damaged");
        std::fs::write(&damaged, b"#V2\n\xff\xfe\n").unwrap();
        let err = HistoryFile::load(damaged.clone(), &mut editor).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot read the history file {}: ",
                damaged.display()
            )),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_save_names_the_file() {
        let dir = scratch("fail");
        let path = dir.join("no-such-dir").join("h");
        let mut editor = DefaultEditor::new().unwrap();
        let file = HistoryFile::load(path.clone(), &mut editor).unwrap();
        editor.add_history_entry("GET a").unwrap();
        let err = file.save(&mut editor).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot save the history file {}: ",
                path.display()
            )),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
