//! The server side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677) as
//! PostgreSQL runs it, sans-IO: client-first-message in, server-first out;
//! client-final in, server-final out, once the proof matches the verifier.

use std::mem;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::crypto::{constant_time_eq, hmac_sha256, sha256};
use super::scram_error::ScramError;
use super::scram_messages::{Gs2Flag, parse_client_final, parse_client_first};
use crate::config::ScramVerifier;

/// The only SASL mechanism offered: no `-PLUS`, since clients reach this
/// exchange without TLS channel binding.
const MECHANISM: &str = "SCRAM-SHA-256";

/// Raw server nonce length; PostgreSQL uses 18 bytes (24 base64 characters).
const SERVER_NONCE_LEN: usize = 18;

/// One client's SCRAM-SHA-256 login against a stored verifier.
pub struct ScramExchange {
    verifier: ScramVerifier,
    server_nonce: String,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal {
        gs2_flag: Gs2Flag,
        /// Client nonce followed by server nonce, as client-final must echo it.
        nonce: Vec<u8>,
        /// `client-first-message-bare "," server-first-message ","`; the
        /// client-final-message-without-proof completes the AuthMessage.
        auth_message: Vec<u8>,
    },
    Finished,
}

impl ScramExchange {
    /// Starts an exchange against a stored verifier; picks a random server nonce.
    pub fn new(verifier: ScramVerifier) -> Self {
        let mut raw_nonce = [0u8; SERVER_NONCE_LEN];
        rand::fill(&mut raw_nonce);
        Self {
            verifier,
            server_nonce: STANDARD.encode(raw_nonce),
            state: State::AwaitingClientFirst,
        }
    }

    /// Handles SASLInitialResponse: `mechanism` must be "SCRAM-SHA-256" and
    /// `data` the client-first-message, with gs2 flag `n` or `y` (`p=...` is
    /// rejected: no channel binding is offered). Returns server-first-message.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::AwaitingClientFirst = mem::replace(&mut self.state, State::Finished) else {
            return Err(ScramError::OutOfOrder);
        };
        if mechanism != MECHANISM {
            return Err(ScramError::UnsupportedMechanism(mechanism.to_owned()));
        }
        let client_first = parse_client_first(data)?;

        let mut nonce = client_first.nonce.to_vec();
        nonce.extend_from_slice(self.server_nonce.as_bytes());
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&nonce);
        server_first.extend_from_slice(
            format!(
                ",s={},i={}",
                STANDARD.encode(&self.verifier.salt),
                self.verifier.iterations
            )
            .as_bytes(),
        );

        let mut auth_message = client_first.bare.to_vec();
        auth_message.push(b',');
        auth_message.extend_from_slice(&server_first);
        auth_message.push(b',');
        self.state = State::AwaitingClientFinal {
            gs2_flag: client_first.gs2_flag,
            nonce,
            auth_message,
        };
        Ok(server_first)
    }

    /// Handles SASLResponse carrying client-final-message: checks the
    /// channel-binding echo (`biws` after `n,,`, `eSws` after `y,,`), the
    /// nonce, and the ClientProof against StoredKey. Returns
    /// server-final-message (`v=...`) on success.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::AwaitingClientFinal {
            gs2_flag,
            nonce,
            mut auth_message,
        } = mem::replace(&mut self.state, State::Finished)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let client_final = parse_client_final(data)?;
        if client_final.channel_binding != gs2_flag.channel_binding_echo() {
            return Err(ScramError::Malformed(
                "channel-binding attribute c= does not match the gs2 header of client-first-message"
                    .to_owned(),
            ));
        }
        if client_final.nonce != nonce.as_slice() {
            return Err(ScramError::Malformed(
                "nonce in client-final-message is not the one the server sent".to_owned(),
            ));
        }
        auth_message.extend_from_slice(client_final.without_proof);

        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the client
        // knows the password iff H(ClientKey) is the StoredKey.
        let client_signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let mut client_key = client_final.proof;
        for (key_byte, signature_byte) in client_key.iter_mut().zip(client_signature) {
            *key_byte ^= signature_byte;
        }
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::WrongPassword);
        }

        let server_signature = hmac_sha256(&self.verifier.server_key, &auth_message);
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::auth::scram_verifier_from_password;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Made by PostgreSQL for the password `secret`
    /// (`CREATE ROLE ... PASSWORD 'secret'` with scram-sha-256).
    const POSTGRES_VERIFIER: &str = "SCRAM-SHA-256$4096:zOe+ARQyx0fFwT0Ok4b4tQ==$a3dWGiPuvBNcTw+LuQVUyvbZMmOgg1Wb0ZwVEeyftTI=:n3h9jDpDo7R0jqwXKE1zHUDxuP2l4mqSAw0laJ0x3X8=";

    /// Test-only reading of `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    fn decode_verifier(text: &str) -> ScramVerifier {
        let rest = text.strip_prefix("SCRAM-SHA-256$").expect("SCRAM prefix");
        let (iterations_and_salt, keys) = rest.split_once('$').expect("two parts");
        let (iterations, salt) = iterations_and_salt.split_once(':').expect("iter:salt");
        let (stored_key, server_key) = keys.split_once(':').expect("stored:server");
        let key = |b64: &str| -> [u8; 32] {
            let bytes = STANDARD.decode(b64).expect("base64 key");
            bytes.try_into().expect("32-byte key")
        };
        ScramVerifier {
            iterations: iterations.parse().expect("iteration count"),
            salt: STANDARD.decode(salt).expect("base64 salt"),
            stored_key: key(stored_key),
            server_key: key(server_key),
        }
    }

    fn postgres_exchange() -> ScramExchange {
        ScramExchange::new(decode_verifier(POSTGRES_VERIFIER))
    }

    /// Runs the whole exchange with postgres-protocol's client; the error is
    /// the server's verdict on the client's proof.
    fn log_in(
        verifier: ScramVerifier,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let mut server = ScramExchange::new(verifier);
        let server_first = server.client_first(MECHANISM, client.message())?;
        client
            .update(&server_first)
            .expect("client accepts server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client verifies server signature");
        Ok(())
    }

    /// A real client's messages for `secret` against `POSTGRES_VERIFIER`,
    /// recorded once so servers in the same state can be rebuilt cheaply.
    struct Transcript {
        client_first: Vec<u8>,
        server_nonce: String,
        client_final: String,
    }

    impl Transcript {
        fn record(binding: ChannelBinding) -> Self {
            let mut client = ScramSha256::new(b"secret", binding);
            let mut server = postgres_exchange();
            let client_first = client.message().to_vec();
            let server_first = server
                .client_first(MECHANISM, &client_first)
                .expect("valid client-first");
            client
                .update(&server_first)
                .expect("client accepts server-first");
            let client_final = String::from_utf8(client.message().to_vec()).expect("ASCII");
            Self {
                client_first,
                server_nonce: server.server_nonce,
                client_final,
            }
        }

        /// A server that has answered this client-first with the same nonce.
        fn server_awaiting_final(&self) -> ScramExchange {
            let mut server = ScramExchange {
                server_nonce: self.server_nonce.clone(),
                ..postgres_exchange()
            };
            server
                .client_first(MECHANISM, &self.client_first)
                .expect("valid client-first");
            server
        }

        fn answer(&self, client_final: &str) -> Result<Vec<u8>, ScramError> {
            self.server_awaiting_final()
                .client_final(client_final.as_bytes())
        }
    }

    fn is_malformed(result: Result<Vec<u8>, ScramError>) -> bool {
        matches!(result, Err(ScramError::Malformed(_)))
    }

    #[test]
    fn right_password_logs_in_with_and_without_binding_support() {
        for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            let verifier = scram_verifier_from_password("correct horse");
            assert_eq!(log_in(verifier, "correct horse", binding), Ok(()));
        }
    }

    #[test]
    fn wrong_password_is_rejected() {
        let verifier = scram_verifier_from_password("correct horse");
        let result = log_in(verifier, "battery staple", ChannelBinding::unsupported());
        assert_eq!(result, Err(ScramError::WrongPassword));
    }

    #[test]
    fn postgres_made_verifier_accepts_only_its_password() {
        let verifier = decode_verifier(POSTGRES_VERIFIER);
        for binding in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            assert_eq!(log_in(verifier.clone(), "secret", binding), Ok(()));
        }
        assert_eq!(
            log_in(verifier, "Secret", ChannelBinding::unsupported()),
            Err(ScramError::WrongPassword)
        );
    }

    #[test]
    fn postgres_protocol_made_verifier_is_accepted() {
        let text = postgres_protocol::password::scram_sha_256(b"p4ss word");
        let verifier = decode_verifier(&text);
        assert_eq!(
            log_in(verifier, "p4ss word", ChannelBinding::unsupported()),
            Ok(())
        );
    }

    #[test]
    fn recorded_transcript_replays_against_a_fresh_server() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        assert!(transcript.answer(&transcript.client_final).is_ok());
    }

    #[test]
    fn server_first_carries_nonce_salt_and_iterations() {
        let mut server = postgres_exchange();
        let server_first = server
            .client_first(MECHANISM, b"n,,n=anyone,r=clientnonce")
            .expect("valid client-first");
        let text = String::from_utf8(server_first).expect("ASCII");
        let (nonce, rest) = text.split_once(",s=").expect("salt attribute");
        let server_nonce = nonce
            .strip_prefix("r=clientnonce")
            .expect("client nonce first");
        assert_eq!(server_nonce.len(), 24);
        assert_eq!(rest, "zOe+ARQyx0fFwT0Ok4b4tQ==,i=4096");
    }

    #[test]
    fn server_nonces_differ_between_exchanges() {
        assert_ne!(
            postgres_exchange().server_nonce,
            postgres_exchange().server_nonce
        );
    }

    #[test]
    fn other_mechanisms_are_refused() {
        assert_eq!(
            postgres_exchange()
                .client_first("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::UnsupportedMechanism(
                "SCRAM-SHA-256-PLUS".into()
            ))
        );
    }

    #[test]
    fn channel_binding_request_is_refused() {
        let result =
            postgres_exchange().client_first(MECHANISM, b"p=tls-server-end-point,,n=,r=abc");
        assert!(is_malformed(result));
    }

    #[test]
    fn client_final_before_client_first_is_out_of_order() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        assert_eq!(
            postgres_exchange().client_final(transcript.client_final.as_bytes()),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn second_client_first_is_out_of_order() {
        let mut server = postgres_exchange();
        server
            .client_first(MECHANISM, b"n,,n=,r=abc")
            .expect("valid client-first");
        assert_eq!(
            server.client_first(MECHANISM, b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn replayed_client_final_is_out_of_order() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        let mut server = transcript.server_awaiting_final();
        let client_final = transcript.client_final.as_bytes();
        assert!(server.client_final(client_final).is_ok());
        assert_eq!(
            server.client_final(client_final),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn failed_exchange_cannot_be_retried() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        let mut server = transcript.server_awaiting_final();
        assert!(is_malformed(server.client_final(b"garbage")));
        assert_eq!(
            server.client_final(transcript.client_final.as_bytes()),
            Err(ScramError::OutOfOrder)
        );
    }

    #[test]
    fn wrong_nonce_is_rejected() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        let tampered = transcript.client_final.replacen(",r=", ",r=X", 1);
        assert!(is_malformed(transcript.answer(&tampered)));
    }

    #[test]
    fn channel_binding_echo_must_match_gs2_flag() {
        let without_support = Transcript::record(ChannelBinding::unsupported());
        let tampered = without_support.client_final.replacen("c=biws", "c=eSws", 1);
        assert!(is_malformed(without_support.answer(&tampered)));

        let unrequested = Transcript::record(ChannelBinding::unrequested());
        let tampered = unrequested.client_final.replacen("c=eSws", "c=biws", 1);
        assert!(is_malformed(unrequested.answer(&tampered)));
    }

    #[test]
    fn bad_base64_proof_is_rejected() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        let (without_proof, _) = transcript.client_final.rsplit_once(",p=").expect("proof");
        let tampered = format!("{without_proof},p=!!not base64!!");
        assert!(is_malformed(transcript.answer(&tampered)));
    }

    #[test]
    fn flipped_proof_bit_is_a_wrong_password() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        let (without_proof, proof) = transcript.client_final.rsplit_once(",p=").expect("proof");
        let mut proof = STANDARD.decode(proof).expect("base64 proof");
        proof[0] ^= 1;
        let tampered = format!("{without_proof},p={}", STANDARD.encode(proof));
        assert_eq!(transcript.answer(&tampered), Err(ScramError::WrongPassword));
    }

    #[test]
    fn every_truncation_fails_without_panicking() {
        let client_first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
        for end in 0..client_first.len() {
            let _ = postgres_exchange().client_first(MECHANISM, &client_first[..end]);
        }
        let transcript = Transcript::record(ChannelBinding::unsupported());
        for end in 0..transcript.client_final.len() {
            let truncated = &transcript.client_final[..end];
            assert!(transcript.answer(truncated).is_err(), "{truncated}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let transcript = Transcript::record(ChannelBinding::unsupported());
        let garbage: [&[u8]; 6] = [b"", b",", b",,,,,,", b"\0\0\0", &[0xff; 64], b"n,,n=,r="];
        for data in garbage {
            assert!(is_malformed(
                postgres_exchange().client_first(MECHANISM, data)
            ));
            assert!(is_malformed(
                transcript.server_awaiting_final().client_final(data)
            ));
        }
    }
}
