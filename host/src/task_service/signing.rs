//! `resource_meta` leaves the host and comes back from whoever can reach
//! the gRPC port, so the host signs what it hands out and refuses what it
//! did not sign: a keyed BLAKE3 MAC over the whole meta, under a key every
//! replica shares (a file mounted from a Secret). Each key has an id, so a
//! new key can sign while older ones still verify the tasks in flight.
//!
//! Layout: `MAGIC`, key-id length (u8), key id, the payload, then the MAC
//! of everything before it.
//!
//! The keys file (YAML):
//! ```yaml
//! signing-key: k2
//! keys:
//!   k1: <base64 of at least 32 random bytes>   # still verifies
//!   k2: <base64 ...>                           # signs new metas
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use data_encoding::BASE64;
use serde::Deserialize;

use super::resource_meta::MetaError;

const MAGIC: &[u8; 4] = b"fwm1";
const MAC_LEN: usize = 32;
/// Separates these MACs from any other use of the same key material.
const CONTEXT: &str = "flytewasm 2026-12 resource_meta MAC v1";
const MIN_KEY_BYTES: usize = 32;

/// The keys that sign and verify `resource_meta`.
#[derive(Clone)]
pub struct MetaKeys {
    signing: String,
    keys: HashMap<String, [u8; 32]>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct KeysFile {
    signing_key: String,
    keys: BTreeMap<String, String>,
}

impl MetaKeys {
    /// Read a keys file; every problem names the file and the key.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let context =
            |what: String| anyhow::anyhow!("resource_meta keys {}: {what}", path.display());
        let text = std::fs::read_to_string(path).map_err(|err| context(err.to_string()))?;
        let file: KeysFile = serde_yaml::from_str(&text).map_err(|err| {
            context(format!(
                "expected `signing-key: ID` and `keys: {{ID: base64}}`: {err}"
            ))
        })?;
        let mut keys = HashMap::new();
        for (id, encoded) in &file.keys {
            check_id(id).map_err(&context)?;
            let material = BASE64
                .decode(encoded.trim().as_bytes())
                .map_err(|err| context(format!("key `{id}` is not base64: {err}")))?;
            if material.len() < MIN_KEY_BYTES {
                return Err(context(format!(
                    "key `{id}` is {} bytes; use at least {MIN_KEY_BYTES} random bytes",
                    material.len()
                )));
            }
            keys.insert(id.clone(), blake3::derive_key(CONTEXT, &material));
        }
        if !keys.contains_key(&file.signing_key) {
            return Err(context(format!(
                "signing-key `{}` is not one of the keys ({})",
                file.signing_key,
                file.keys.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(MetaKeys {
            signing: file.signing_key,
            keys,
        })
    }

    /// A random key for this process alone (`serve --sandbox`, tests):
    /// its metas do not survive a restart and no other replica reads them.
    pub fn ephemeral() -> Self {
        let mut material = [0u8; 32];
        getrandom::fill(&mut material).expect("the OS gives randomness");
        MetaKeys {
            signing: "ephemeral".into(),
            keys: HashMap::from([("ephemeral".into(), blake3::derive_key(CONTEXT, &material))]),
        }
    }

    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let id = self.signing.as_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + id.len() + payload.len() + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(payload);
        let tag = blake3::keyed_hash(&self.keys[&self.signing], &out);
        out.extend_from_slice(tag.as_bytes());
        out
    }

    /// The payload of bytes one of these keys signed.
    pub fn verify<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], MetaError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(MetaError::Unsigned)?;
        let (&id_len, rest) = rest.split_first().ok_or(MetaError::Unsigned)?;
        let id_len = id_len as usize;
        if rest.len() < id_len + MAC_LEN {
            return Err(MetaError::Unsigned);
        }
        let id = String::from_utf8_lossy(&rest[..id_len]);
        let key = self
            .keys
            .get(id.as_ref())
            .ok_or_else(|| MetaError::UnknownKey(id.chars().take(64).collect()))?;
        let (body, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let tag: [u8; MAC_LEN] = tag.try_into().expect("split at MAC_LEN");
        // `Hash` equality is constant-time.
        if blake3::keyed_hash(key, body) != blake3::Hash::from_bytes(tag) {
            return Err(MetaError::BadSignature);
        }
        Ok(&body[MAGIC.len() + 1 + id_len..])
    }
}

fn check_id(id: &str) -> Result<(), String> {
    let fine = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "key id `{id}` must be 1-64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_file(dir: &Path, signing: &str, keys: &[(&str, u8)]) -> std::path::PathBuf {
        let mut text = format!("signing-key: {signing}\nkeys:\n");
        for (id, fill) in keys {
            text.push_str(&format!("  {id}: {}\n", BASE64.encode(&[*fill; 32])));
        }
        let path = dir.join(format!("keys-{signing}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn signed_bytes_verify_and_any_change_is_refused() {
        let keys = MetaKeys::ephemeral();
        let signed = keys.sign(b"{\"version\":1}");
        assert_eq!(keys.verify(&signed).unwrap(), b"{\"version\":1}");
        for i in 0..signed.len() {
            let mut edited = signed.clone();
            edited[i] ^= 1;
            assert!(
                keys.verify(&edited).is_err(),
                "byte {i} changed and still verified"
            );
        }
        assert_eq!(keys.verify(b"{}").unwrap_err(), MetaError::Unsigned);
        assert_eq!(keys.verify(&signed[..10]).unwrap_err(), MetaError::Unsigned);
    }

    #[test]
    fn rotation_keeps_old_metas_readable_and_other_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let old = MetaKeys::load(&keys_file(dir.path(), "k1", &[("k1", 1)])).unwrap();
        let rotated =
            MetaKeys::load(&keys_file(dir.path(), "k2", &[("k1", 1), ("k2", 2)])).unwrap();
        let before = old.sign(b"task");
        assert_eq!(rotated.verify(&before).unwrap(), b"task");
        let after = rotated.sign(b"task");
        assert_eq!(
            old.verify(&after).unwrap_err(),
            MetaError::UnknownKey("k2".into())
        );
        // The same id with other key material: a replay from another deployment.
        let elsewhere = MetaKeys::load(&keys_file(dir.path(), "k1", &[("k1", 9)])).unwrap();
        assert_eq!(
            elsewhere.verify(&before).unwrap_err(),
            MetaError::BadSignature
        );
    }

    #[test]
    fn bad_keys_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.yaml");
        for (text, expected) in [
            (
                "signing-key: k1\nkeys: { k1: c2hvcnQ= }\n",
                "key `k1` is 5 bytes",
            ),
            (
                "signing-key: k9\nkeys: {}\n",
                "signing-key `k9` is not one of the keys",
            ),
            ("keys: {}\n", "signing-key"),
            ("signing-key: k1\nkeys: { k1: '!!' }\n", "not base64"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = MetaKeys::load(&path).err().expect(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
