//! [`PerValue`]: what a client makes of a credential's value, made again only for a new value.

use std::fmt;
use std::sync::Mutex;

use super::secret::Secret;

/// What a client makes of a credential's value (its auth headers, checked), made once per
/// value: again only when a re-read brings another one. A value that cannot be used fails where
/// it was read (the cold start, the re-read), with the client's error, not in every request's
/// path; the error is not kept (each use of that value says it again).
///
/// ```
/// use lambda_kit::secrets::{PerValue, Secret};
/// let made = PerValue::default();
/// let header = |k: &Secret| Ok::<_, ()>(format!("Bearer {}", k.expose()));
/// assert_eq!(made.get(&Secret::new("k1"), header).unwrap(), "Bearer k1");
/// // The same value: made earlier, not again.
/// assert_eq!(made.get(&Secret::new("k1"), |_| Err(())).unwrap(), "Bearer k1");
/// assert!(made.get(&Secret::new("k2"), |_| Err::<String, _>(())).is_err());
/// ```
pub struct PerValue<T>(Mutex<Option<(Secret, T)>>);

impl<T> Default for PerValue<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> fmt::Debug for PerValue<T> {
    // The value made may be a header holding the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PerValue([REDACTED])")
    }
}

impl<T: Clone> PerValue<T> {
    /// What `make` made of `value`, made now unless it was made of this value last.
    pub fn get<E>(
        &self,
        value: &Secret,
        make: impl FnOnce(&Secret) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some((held, made)) = &*self.0.lock().expect("per value")
            && held == value
        {
            return Ok(made.clone());
        }
        let made = make(value)?;
        *self.0.lock().expect("per value") = Some((value.clone(), made.clone()));
        Ok(made)
    }
}
