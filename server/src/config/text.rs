//! The text format of the original C++ project: the subset of protobuf text
//! format it used.
//!
//! `field: value` pairs separated by whitespace, newlines, `,` or `;`; values
//! are single- or double-quoted strings or numbers; `#` starts a comment. The
//! fields are `my_addr`, `my_paxos`, `fail_rate` and `replica` (repeated).
//! Errors name the field, line and column at fault.

use super::validate::parse_fail_rate;
use super::ConfigError;

/// Fields the text format knows.
pub(super) const TEXT_FIELDS: &str = "my_addr, my_paxos, fail_rate, replica";

/// The settings found in the text format, before flags and checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextConfig {
    /// `my_addr`, if given.
    pub my_addr: Option<String>,
    /// `my_paxos`, if given.
    pub my_paxos: Option<String>,
    /// `fail_rate`, if given (already checked to be in [0, 1]).
    pub fail_rate: Option<f64>,
    /// Every `replica`, in order.
    pub replicas: Vec<String>,
}

/// One lexical token of the text format, with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A field name.
    Ident(String),
    /// `:`
    Colon,
    /// A quoted string, quotes removed and escapes resolved.
    Str(String),
    /// An unquoted number (or other bare word that is not a field name).
    Bare(String),
    /// `,` or `;` between fields.
    Sep,
}

/// Splits the text format into tokens with their (line, column).
fn lex(text: &str) -> Result<Vec<(Token, usize, usize)>, ConfigError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1usize, 1usize);
    let syntax = |line, column, message: String| ConfigError::Syntax {
        line,
        column,
        message,
    };
    while let Some(&c) = chars.peek() {
        let (tl, tc) = (line, col);
        let mut bump = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let c = chars.next();
            if c == Some('\n') {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            c
        };
        match c {
            c if c.is_whitespace() => {
                bump(&mut chars);
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    bump(&mut chars);
                }
            }
            ':' => {
                bump(&mut chars);
                out.push((Token::Colon, tl, tc));
            }
            ',' | ';' => {
                bump(&mut chars);
                out.push((Token::Sep, tl, tc));
            }
            '\'' | '"' => {
                let quote = c;
                bump(&mut chars);
                let mut s = String::new();
                loop {
                    match bump(&mut chars) {
                        None | Some('\n') => {
                            return Err(syntax(tl, tc, format!("unterminated {quote} string")))
                        }
                        Some(c) if c == quote => break,
                        Some('\\') => match bump(&mut chars) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(e @ ('\\' | '\'' | '"')) => s.push(e),
                            Some(e) => {
                                return Err(syntax(
                                    tl,
                                    tc,
                                    format!("unknown escape \\{e} in string"),
                                ))
                            }
                            None => {
                                return Err(syntax(tl, tc, format!("unterminated {quote} string")))
                            }
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.push((Token::Str(s), tl, tc));
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') {
                        s.push(c);
                        bump(&mut chars);
                    } else {
                        break;
                    }
                }
                let is_ident = s
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                out.push((
                    if is_ident {
                        Token::Ident(s)
                    } else {
                        Token::Bare(s)
                    },
                    tl,
                    tc,
                ));
            }
            other => {
                return Err(syntax(tl, tc, format!("unexpected character {other:?}")));
            }
        }
    }
    Ok(out)
}

/// Parses the text format (see the module doc).
pub fn parse_text(text: &str) -> Result<TextConfig, ConfigError> {
    let tokens = lex(text)?;
    let mut cfg = TextConfig::default();
    let mut i = 0;
    let end = |i: usize| -> (usize, usize) {
        tokens
            .get(i)
            .map(|(_, l, c)| (*l, *c))
            .or_else(|| tokens.last().map(|(_, l, c)| (*l, *c)))
            .unwrap_or((1, 1))
    };
    while i < tokens.len() {
        let (tok, line, column) = &tokens[i];
        let field = match tok {
            Token::Sep => {
                i += 1;
                continue;
            }
            Token::Ident(name) => name.clone(),
            other => {
                return Err(ConfigError::Syntax {
                    line: *line,
                    column: *column,
                    message: format!("expected a field name, found {}", describe(other)),
                })
            }
        };
        let line = *line;
        if !matches!(
            field.as_str(),
            "my_addr" | "my_paxos" | "fail_rate" | "replica"
        ) {
            return Err(ConfigError::UnknownField { field, line });
        }
        match tokens.get(i + 1) {
            Some((Token::Colon, _, _)) => {}
            other => {
                let (l, c) = other.map(|(_, l, c)| (*l, *c)).unwrap_or_else(|| end(i));
                return Err(ConfigError::Syntax {
                    line: l,
                    column: c,
                    message: format!("expected `:` after `{field}`"),
                });
            }
        }
        let value = match tokens.get(i + 2) {
            Some((Token::Str(s), _, _)) => Value::Str(s.clone()),
            Some((Token::Bare(s), _, _)) | Some((Token::Ident(s), _, _)) => Value::Bare(s.clone()),
            other => {
                let (l, c) = other.map(|(_, l, c)| (*l, *c)).unwrap_or_else(|| end(i));
                return Err(ConfigError::Syntax {
                    line: l,
                    column: c,
                    message: format!("expected a value for `{field}`"),
                });
            }
        };
        i += 3;
        let wrong = |message: &str| ConfigError::WrongType {
            field: field.clone(),
            line,
            message: message.to_owned(),
        };
        let twice = || ConfigError::DuplicateField {
            field: field.clone(),
            line,
        };
        match field.as_str() {
            "my_addr" | "my_paxos" | "replica" => {
                let Value::Str(s) = value else {
                    return Err(wrong("must be a quoted 'host:port' string"));
                };
                let slot = match field.as_str() {
                    "my_addr" => &mut cfg.my_addr,
                    "my_paxos" => &mut cfg.my_paxos,
                    _ => {
                        cfg.replicas.push(s);
                        continue;
                    }
                };
                if slot.is_some() {
                    return Err(twice());
                }
                *slot = Some(s);
            }
            _ => {
                if cfg.fail_rate.is_some() {
                    return Err(twice());
                }
                let s = match value {
                    Value::Str(s) | Value::Bare(s) => s,
                };
                cfg.fail_rate = Some(parse_fail_rate(&s)?);
            }
        }
    }
    Ok(cfg)
}

/// A field's value as written.
enum Value {
    /// Quoted.
    Str(String),
    /// Unquoted (a number, or a mistake).
    Bare(String),
}

fn describe(tok: &Token) -> String {
    match tok {
        Token::Ident(s) => format!("`{s}`"),
        Token::Colon => "`:`".into(),
        Token::Str(s) => format!("string {s:?}"),
        Token::Bare(s) => format!("`{s}`"),
        Token::Sep => "separator".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_allows_both_quotes_separators_newlines_and_comments() {
        let text = "# replica 1 of 3\n\
                    my_addr: \"127.0.0.1:8001\", my_paxos:'127.0.0.1:9001';\n\
                    fail_rate: 1   # never answers\n\
                    replica:'127.0.0.1:9000'\n replica : '127.0.0.1:9001',replica:\"127.0.0.1:9002\"\n";
        let t = parse_text(text).expect("valid");
        assert_eq!(t.my_addr.as_deref(), Some("127.0.0.1:8001"));
        assert_eq!(t.my_paxos.as_deref(), Some("127.0.0.1:9001"));
        assert_eq!(t.fail_rate, Some(1.0));
        assert_eq!(
            t.replicas,
            ["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"]
        );
        let t = parse_text("fail_rate:'0.25' fail_rate_is_not_here:1");
        assert!(
            matches!(t, Err(ConfigError::UnknownField { ref field, .. }) if field == "fail_rate_is_not_here")
        );
        assert_eq!(parse_text("").expect("empty"), TextConfig::default());
        assert_eq!(
            parse_text("fail_rate:.5").expect("num").fail_rate,
            Some(0.5)
        );
        assert_eq!(parse_text("fail_rate:0").expect("num").fail_rate, Some(0.0));
    }

    #[test]
    fn unknown_field_is_named_with_its_line() {
        let e = parse_text("my_addr:'h:1'\nmy_adr:'h:2'").expect_err("typo");
        let msg = e.to_string();
        assert!(
            msg.contains("unknown field `my_adr`") && msg.contains("line 2"),
            "{msg}"
        );
        assert!(msg.contains("my_paxos"), "lists known fields: {msg}");
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let e = parse_text("my_addr '0.0.0.0:8000'").expect_err("no colon");
        assert!(
            e.to_string().contains("expected `:` after `my_addr`"),
            "{e}"
        );
        let e = parse_text("my_addr:'0.0.0.0:8000").expect_err("open quote");
        assert!(
            matches!(
                e,
                ConfigError::Syntax {
                    line: 1,
                    column: 9,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_text("my_addr:").expect_err("no value");
        assert!(
            e.to_string().contains("expected a value for `my_addr`"),
            "{e}"
        );
        let e = parse_text("\n  'x'").expect_err("no field");
        assert!(
            matches!(
                e,
                ConfigError::Syntax {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_text("my_addr:{}").expect_err("brace");
        assert!(e.to_string().contains("unexpected character '{'"), "{e}");
        let e = parse_text("my_addr:8000").expect_err("number for address");
        assert!(e.to_string().contains("`my_addr` must be a quoted"), "{e}");
        let e = parse_text("my_addr:'a:1' my_addr:'a:2'").expect_err("twice");
        assert!(e.to_string().contains("`my_addr` given twice"), "{e}");
    }
}
