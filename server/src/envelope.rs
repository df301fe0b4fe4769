//! Outgoing envelopes built from messages encoded once.
//!
//! A coordinator sends the same Accept (a batch of client commands) to every
//! other replica. Encoding it to protobuf once per peer copied every key and
//! value once per peer, twice (core type to protobuf struct, then to bytes).
//! Here a message is encoded once into [`Bytes`], and the same bytes go into
//! every peer's queue; [`EnvelopeCodec`] writes an envelope around them.
//!
//! The bytes on the wire are exactly those of a [`pb::Envelope`] with the
//! same fields (a repeated message field is the concatenation of its
//! length-delimited elements), so the receiving side decodes a plain
//! `pb::Envelope` and needs no change.

use bytes::{Buf, BufMut, Bytes};
use paxoskv::paxos as pb;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Field numbers of [`pb::Envelope`] (see `proto/paxos.proto`).
const FROM: u32 = 1;
const TO: u32 = 2;
const CLUSTER_SIZE: u32 = 3;
const SENDER_ADDR: u32 = 4;
const MESSAGES: u32 = 5;

/// One [`pb::PaxosMessage`], encoded.
pub type Encoded = Bytes;

/// Encodes one message for the peer queues.
pub fn encode(m: &pb::PaxosMessage) -> Encoded {
    Bytes::from(prost::Message::encode_to_vec(m))
}

/// An envelope whose messages are already encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutEnvelope {
    /// Sender's index.
    pub from: u32,
    /// Receiver's index.
    pub to: u32,
    /// The sender's cluster size.
    pub cluster_size: u32,
    /// The sender's client address.
    pub sender_addr: String,
    /// The messages, each an encoded [`pb::PaxosMessage`].
    pub messages: Vec<Encoded>,
}

impl OutEnvelope {
    /// Bytes [`OutEnvelope::encode_to`] writes.
    pub fn encoded_len(&self) -> usize {
        let uint = |field: u32, v: u32| {
            if v == 0 {
                0
            } else {
                key_len(field) + encoded_len_varint(u64::from(v))
            }
        };
        let delimited =
            |field: u32, len: usize| key_len(field) + encoded_len_varint(len as u64) + len;
        let addr = if self.sender_addr.is_empty() {
            0
        } else {
            delimited(SENDER_ADDR, self.sender_addr.len())
        };
        uint(FROM, self.from)
            + uint(TO, self.to)
            + uint(CLUSTER_SIZE, self.cluster_size)
            + addr
            + self
                .messages
                .iter()
                .map(|m| delimited(MESSAGES, m.len()))
                .sum::<usize>()
    }

    /// Writes the protobuf encoding of the [`pb::Envelope`] this stands for
    /// (fields in number order, zero and empty fields left out, as prost
    /// does).
    pub fn encode_to(&self, dst: &mut impl BufMut) {
        for (field, v) in [
            (FROM, self.from),
            (TO, self.to),
            (CLUSTER_SIZE, self.cluster_size),
        ] {
            if v != 0 {
                encode_key(field, WireType::Varint, dst);
                encode_varint(u64::from(v), dst);
            }
        }
        if !self.sender_addr.is_empty() {
            delimited(SENDER_ADDR, self.sender_addr.as_bytes(), dst);
        }
        for m in &self.messages {
            delimited(MESSAGES, m, dst);
        }
    }
}

fn delimited(field: u32, bytes: &[u8], dst: &mut impl BufMut) {
    encode_key(field, WireType::LengthDelimited, dst);
    encode_varint(bytes.len() as u64, dst);
    dst.put_slice(bytes);
}

/// The codec of the client side of `Paxos.Deliver`: sends [`OutEnvelope`]s,
/// receives the [`pb::DeliverSummary`].
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvelopeCodec;

impl Codec for EnvelopeCodec {
    type Encode = OutEnvelope;
    type Decode = pb::DeliverSummary;
    type Encoder = EnvelopeCodec;
    type Decoder = EnvelopeCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EnvelopeCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EnvelopeCodec
    }
}

impl Encoder for EnvelopeCodec {
    type Item = OutEnvelope;
    type Error = Status;

    fn encode(&mut self, item: OutEnvelope, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode_to(dst);
        Ok(())
    }
}

impl Decoder for EnvelopeCodec {
    type Item = pb::DeliverSummary;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let summary =
            <pb::DeliverSummary as prost::Message>::decode(src.copy_to_bytes(src.remaining()))
                .map_err(|e| Status::internal(format!("undecodable DeliverSummary: {e}")))?;
        Ok(Some(summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert;
    use crate::kv::{Command, Op};
    use crate::paxos::{Ballot, Message, Value};

    fn accept(slot: u64) -> pb::PaxosMessage {
        convert::message_to_pb(&Message::Accept {
            ballot: Ballot {
                round: 7,
                replica: 1,
            },
            slot,
            value: Value::Batch(vec![Command {
                client_id: 3,
                seq: slot,
                op: Op::Put {
                    key: format!("k{slot}"),
                    value: "v".repeat(300),
                },
            }]),
        })
    }

    /// The hand-written envelope is byte for byte what prost writes for the
    /// same `pb::Envelope`, so the receiver decodes it unchanged.
    #[test]
    fn encodes_exactly_like_the_protobuf_envelope() {
        let shapes = [
            (0, 0, 0, "", vec![]),
            (1, 2, 3, "127.0.0.1:8001", vec![accept(1)]),
            (
                4,
                0,
                5,
                "",
                vec![accept(2), accept(3), pb::PaxosMessage { kind: None }],
            ),
        ];
        for (from, to, cluster_size, addr, messages) in shapes {
            let want = pb::Envelope {
                from,
                to,
                cluster_size,
                sender_addr: addr.to_string(),
                messages: messages.clone(),
            };
            let ours = OutEnvelope {
                from,
                to,
                cluster_size,
                sender_addr: addr.to_string(),
                messages: messages.iter().map(encode).collect(),
            };
            let mut buf = Vec::new();
            ours.encode_to(&mut buf);
            assert_eq!(buf, prost::Message::encode_to_vec(&want));
            assert_eq!(ours.encoded_len(), buf.len());
            let back: pb::Envelope = prost::Message::decode(&buf[..]).unwrap();
            assert_eq!(back, want);
        }
    }
}
