//! Every decoder against truncated, mutated and random payloads: each must
//! return an error or a value, never panic; and what the handshake decoders
//! accept must survive being encoded and decoded again unchanged.

use bytes::BytesMut;

use super::errors;
use super::flags::{capability, status};
use super::handshake::{
    AuthSwitchRequest, CACHING_SHA2_PASSWORD, HandshakeResponse, NATIVE_PASSWORD, ServerHandshake,
    is_ssl_request,
};
use super::lenenc;
use super::packet::{Header, take_packet};
use super::response::{Eof, ErrPacket, OkPacket, is_terminator, session_changes};

/// xorshift64: deterministic, so a failure reproduces.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const ALL_CAPABILITIES: [u32; 3] = [
    capability::PROTOCOL_41,
    capability::PROTOCOL_41 | capability::SESSION_TRACK,
    capability::PROTOCOL_41 | capability::SESSION_TRACK | capability::DEPRECATE_EOF,
];

fn encode(encoder: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encoder(&mut dst);
    dst.to_vec()
}

/// Valid payloads of every kind, to be cut and mutated.
fn samples() -> Vec<Vec<u8>> {
    let handshake = ServerHandshake {
        server_version: "8.4.0".to_owned(),
        connection_id: 9,
        scramble: *b"abcdefghijklmnopqrst",
        capabilities: u32::MAX,
        charset: 255,
        status: status::AUTOCOMMIT,
        auth_plugin: CACHING_SHA2_PASSWORD.to_owned(),
    };
    let response = HandshakeResponse {
        capabilities: u32::MAX,
        max_packet_size: 1 << 24,
        charset: 45,
        user: "app".to_owned(),
        auth_response: vec![1; 20],
        database: Some("db".to_owned()),
        auth_plugin: Some(NATIVE_PASSWORD.to_owned()),
        attributes: vec![("_os".to_owned(), "Linux".to_owned())],
    };
    let legacy_response = HandshakeResponse {
        capabilities: capability::PROTOCOL_41 | capability::SECURE_CONNECTION,
        ..response.clone()
    };
    let state = b"\x01\x03\x02db\x00\x06\x01a\x03off\x03\x04\x00\x02g1\x05\x02\x01x\x02\x02\x011";
    let ok = OkPacket {
        header: 0x00,
        affected_rows: 70_000,
        last_insert_id: 1 << 40,
        status: status::SESSION_STATE_CHANGED,
        warnings: 1,
        info: b"Rows matched: 1",
        session_state: Some(state),
    };
    vec![
        encode(|dst| handshake.encode(dst)),
        encode(|dst| response.encode(dst)),
        encode(|dst| legacy_response.encode(dst)),
        encode(|dst| {
            AuthSwitchRequest {
                plugin: NATIVE_PASSWORD.to_owned(),
                data: vec![7; 20],
            }
            .encode(dst)
        }),
        encode(|dst| ok.encode(dst, capability::SESSION_TRACK)),
        encode(|dst| {
            Eof {
                warnings: 0,
                status: 2,
            }
            .encode(dst)
        }),
        encode(|dst| ErrPacket::new(errors::ACCESS_DENIED, "denied").encode(dst)),
        state.to_vec(),
    ]
}

/// Runs every decoder over `payload`; panicking is the only failure.
fn decode_everything(payload: &[u8]) {
    if let Ok(handshake) = ServerHandshake::decode(payload) {
        let again = ServerHandshake::decode(&encode(|dst| handshake.encode(dst)));
        assert_eq!(again.as_ref(), Ok(&handshake), "{payload:?}");
    }
    if let Ok(response) = HandshakeResponse::decode(payload) {
        let again = HandshakeResponse::decode(&encode(|dst| response.encode(dst)));
        assert_eq!(again.as_ref(), Ok(&response), "{payload:?}");
    }
    if let Ok(request) = AuthSwitchRequest::decode(payload) {
        let again = AuthSwitchRequest::decode(&encode(|dst| request.encode(dst)));
        assert_eq!(again.as_ref(), Ok(&request), "{payload:?}");
    }
    is_ssl_request(payload);
    for capabilities in ALL_CAPABILITIES {
        if let Ok(ok) = OkPacket::decode(payload, capabilities) {
            encode(|dst| ok.encode(dst, capabilities));
            if let Some(state) = ok.session_state {
                let _ = session_changes(state);
            }
        }
    }
    let _ = Eof::decode(payload);
    is_terminator(payload);
    if let Ok(err) = ErrPacket::decode(payload) {
        encode(|dst| err.encode(dst));
    }
    let _ = session_changes(payload);
    Header::parse(payload);
    take_packet(&mut BytesMut::from(payload));
    read_primitives(payload);
}

fn read_primitives(payload: &[u8]) {
    let mut buf = payload;
    let _ = lenenc::read_int(&mut buf);
    let _ = lenenc::read_bytes(&mut buf);
    let _ = lenenc::read_null_terminated(&mut buf);
    let _ = lenenc::read_u32_le(&mut buf);
    let _ = lenenc::read_u16_le(&mut buf);
    let _ = lenenc::read_u8(&mut buf);
    let _ = lenenc::read_fixed(&mut buf, payload.len());
}

#[test]
fn every_prefix_of_a_valid_payload_decodes_or_errors() {
    for sample in samples() {
        for end in 0..=sample.len() {
            decode_everything(&sample[..end]);
        }
    }
}

#[test]
fn mutated_payloads_decode_or_error() {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    for sample in samples() {
        for _ in 0..2_000 {
            let mut mutated = sample.clone();
            for _ in 0..=noise.below(3) {
                let at = noise.below(mutated.len());
                mutated[at] = noise.next() as u8;
            }
            let end = noise.below(mutated.len() + 1);
            decode_everything(&mutated[..end]);
        }
    }
}

#[test]
fn random_payloads_decode_or_error() {
    let mut noise = Noise(0xD1B5_4A32_D192_ED03);
    for _ in 0..20_000 {
        let len = noise.below(80);
        let mut payload = noise.bytes(len);
        // Lead with the header bytes decoders branch on, so random input
        // gets past the first check often.
        if let Some(first) = payload.first_mut() {
            *first = [0x00, 0x0A, 0xFE, 0xFF, 0x01, *first][noise.below(6)];
        }
        decode_everything(&payload);
    }
}
