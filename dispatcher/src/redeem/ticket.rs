//! Tickets: 32 random bytes, base64url. Only the sha256 is stored; the ticket itself lives in
//! memory until sbatch and on the job's command line.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A freshly issued ticket. `Debug` never shows it.
pub struct Ticket {
    secret: String,
    hash: String,
}

impl Ticket {
    /// 32 bytes from the thread's CSPRNG (ChaCha, seeded from the OS).
    pub fn issue() -> Ticket {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = ticket_hash(&secret);
        Ticket { secret, hash }
    }

    /// What the database stores.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The ticket itself, for `sbatch` only.
    pub fn into_secret(self) -> String {
        self.secret
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket(<redacted>)")
    }
}

/// sha256 of the ticket's text, lowercase hex.
pub fn ticket_hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

#[cfg(test)]
mod tests {
    use redeem_contract::{is_valid_ticket, ISSUED_TICKET_LEN};

    use super::*;

    #[test]
    fn tickets_are_random_base64url_and_stored_hashed() {
        let a = Ticket::issue();
        let b = Ticket::issue();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(format!("{a:?}"), "Ticket(<redacted>)");
        let hash = a.hash().to_string();
        let secret = a.into_secret();
        assert_eq!(secret.len(), ISSUED_TICKET_LEN);
        assert!(secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(is_valid_ticket(&secret));
        assert_eq!(hash, ticket_hash(&secret));
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(
            ticket_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
