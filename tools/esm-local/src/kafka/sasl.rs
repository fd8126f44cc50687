//! SASL/SCRAM-SHA-256 and -512 client exchange (RFC 5802, as Kafka uses it: no channel binding).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::{KafkaError, SaslMechanism};

/// State of one SCRAM exchange.
#[derive(Debug)]
pub struct ScramClient {
    mechanism: SaslMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    auth_message: String,
    salted_password: Vec<u8>,
}

impl ScramClient {
    pub fn new(mechanism: SaslMechanism, username: &str, password: &str) -> Self {
        let nonce: String = (0..24).map(|_| fastrand::alphanumeric()).collect();
        Self::with_nonce(mechanism, username, password, nonce)
    }

    fn with_nonce(mechanism: SaslMechanism, username: &str, password: &str, nonce: String) -> Self {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Self {
            mechanism,
            password: password.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
            auth_message: String::new(),
            salted_password: Vec::new(),
        }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, KafkaError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| KafkaError::Auth("SCRAM server-first message is not UTF-8".into()))?;
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .ok_or_else(|| {
                    KafkaError::Auth(format!("SCRAM server-first message lacks `{name}`"))
                })
        };
        let nonce = attr("r")?;
        if !nonce.starts_with(&self.nonce) {
            return Err(KafkaError::Auth(
                "SCRAM server nonce does not extend ours".into(),
            ));
        }
        let salt = B64
            .decode(attr("s")?)
            .map_err(|_| KafkaError::Auth("SCRAM salt is not base64".into()))?;
        let iterations: u32 = attr("i")?
            .parse()
            .map_err(|_| KafkaError::Auth("SCRAM iteration count is not a number".into()))?;
        self.salted_password = self.pbkdf2(&salt, iterations);
        let client_key = self.hmac(&self.salted_password, b"Client Key");
        let stored_key = self.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), KafkaError> {
        let text = std::str::from_utf8(server_final).unwrap_or_default();
        if let Some(err) = text.strip_prefix("e=") {
            return Err(KafkaError::Auth(format!("SCRAM server error: {err}")));
        }
        let verifier = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| {
                KafkaError::Auth("SCRAM server-final message lacks a verifier".into())
            })?;
        let server_key = self.hmac(&self.salted_password, b"Server Key");
        if verifier != self.hmac(&server_key, self.auth_message.as_bytes()) {
            return Err(KafkaError::Auth(
                "SCRAM server signature does not match".into(),
            ));
        }
        Ok(())
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
            _ => Sha256::digest(data).to_vec(),
        }
    }

    fn pbkdf2(&self, salt: &[u8], rounds: u32) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(self.password.as_bytes(), salt, rounds, &mut out);
                out
            }
            _ => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(self.password.as_bytes(), salt, rounds, &mut out);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCRAM-SHA-256 example exchange of RFC 7677, section 3.
    #[test]
    fn rfc7677_exchange() {
        let mut c = ScramClient::with_nonce(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = c.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.verify_server_final(b"v=AAAA").is_err());
        assert!(c.verify_server_final(b"e=invalid-proof").is_err());
    }

    #[test]
    fn foreign_nonce_is_rejected() {
        let mut c = ScramClient::with_nonce(SaslMechanism::ScramSha512, "u", "p", "abc".into());
        assert!(c.client_final(b"r=zzz,s=AAAA,i=4096").is_err());
        assert!(c.client_final(b"r=abcdef,i=4096").is_err());
    }
}
