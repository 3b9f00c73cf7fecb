//! SendGrid's Signed Event Webhook: each request carries an ECDSA P-256 signature (SHA-256) of
//! the `X-Twilio-Email-Event-Webhook-Timestamp` header's value followed by the body, made with
//! the account's private key. The collector checks it with the public key SendGrid shows in
//! its settings (base64 DER), so a forged request with a guessed write key is still refused.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use std::fmt;

/// The header holding the base64 DER signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The header holding the timestamp the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// A SendGrid webhook verification key.
#[derive(Clone)]
pub struct SendgridKey {
    key: VerifyingKey,
}

impl fmt::Debug for SendgridKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendgridKey(..)")
    }
}

impl std::str::FromStr for SendgridKey {
    type Err = String;

    /// The key as SendGrid shows it: base64 of the DER public key (PEM armour accepted).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = crate::collector::decode_base64(&body)
            .filter(|der| !der.is_empty())
            .ok_or("the SendGrid verification key is not base64")?;
        let key = VerifyingKey::from_public_key_der(&der).map_err(|error| {
            format!("the SendGrid verification key is not a P-256 public key ({error})")
        })?;
        Ok(SendgridKey { key })
    }
}

impl SendgridKey {
    /// Checks `signature` (base64 DER) over `timestamp` followed by `body`; the error says why
    /// not, for the 401 answer.
    pub fn verify(&self, timestamp: &str, body: &[u8], signature: &str) -> Result<(), String> {
        let der = crate::collector::decode_base64(signature.trim())
            .ok_or_else(|| format!("{SIGNATURE_HEADER}: not base64"))?;
        let signature = Signature::from_der(&der)
            .map_err(|_| format!("{SIGNATURE_HEADER}: not a DER ECDSA signature"))?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key.verify(&signed, &signature).map_err(|_| {
            format!(
                "{SIGNATURE_HEADER} does not verify with the configured SendGrid key over this \
                 body and {TIMESTAMP_HEADER}"
            )
        })
    }
}
