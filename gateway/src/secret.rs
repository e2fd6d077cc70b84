//! A secret string: keys, API keys, webhook secrets. `Debug` and `Display` print nothing, so a
//! secret never reaches a log by accident.

use std::fmt;

/// A secret. Read it only where it is used, with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_prints_nothing_of_the_secret() {
        let secret = super::Secret::new("sk_live_abcdef".to_owned());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
