//! Files sent in a chat: stored in the data directory, described by a record in the store.
//!
//! Each attachment is one file, `<data-dir>/attachments/<conversation id>/<id>`, where the id
//! is 16 random bytes in base64url, so file names never come from the sender. The file is
//! written under a temporary name, fsynced, renamed into place and its directory fsynced
//! before the metadata record is committed; a crash in between leaves at most an orphan file
//! that nothing points to, never a record without its bytes.
//!
//! Nothing the sender says about the file is trusted: the display name is sanitised, and
//! whether the file is an image (which the widget and console preview inline) is decided by
//! its first bytes, not by the declared MIME type. The dashboards must still serve files
//! that are not images as downloads (`Content-Disposition: attachment`,
//! `X-Content-Type-Options: nosniff`), because a declared type is only a hint.
//!
//! [`Attachments`] does not check who is asking; [`crate::Conversations::upload_attachment`]
//! and [`crate::Conversations::attachment`] do, and are what the dashboards call.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{ConversationError, StoreError};
use crate::masking::mask_card_numbers;
use crate::store::Store;

/// The largest attachment accepted: 2 MiB.
pub const MAX_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;

/// Display names are cut to this many characters.
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 128;

/// The longest attachment id accepted when reading (generated ids are 22 characters).
const MAX_ID_LEN: usize = 64;

/// The name given to a file whose name sanitises to nothing.
const FALLBACK_NAME: &str = "attachment";

const OCTET_STREAM: &str = "application/octet-stream";

/// What is known about a stored attachment. Carried inside attachment messages, so both
/// parties see the same name, type and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// Random, URL-safe: `[A-Za-z0-9_-]`.
    pub id: String,
    /// The sanitised display name (no path, no control characters, at most 128 characters).
    pub name: String,
    /// The sniffed image type for images; otherwise the sender's declared type if it is
    /// well-formed and not one browsers would run or render as a page, else
    /// `application/octet-stream`.
    pub mime: String,
    pub size: u64,
    /// Whether the bytes are a PNG, JPEG, GIF or WebP image (by their magic bytes).
    pub image: bool,
}

/// Attachment files and their metadata records.
#[derive(Debug, Clone)]
pub struct Attachments {
    dir: PathBuf,
    store: Arc<dyn Store>,
}

impl Attachments {
    /// Attachments kept under `<data_dir>/attachments`. Nothing is created until the first
    /// file is stored.
    pub fn new(data_dir: impl AsRef<Path>, store: Arc<dyn Store>) -> Self {
        Self {
            dir: data_dir.as_ref().join("attachments"),
            store,
        }
    }

    /// The directory that holds every conversation's attachment directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a file for a conversation and returns its metadata once both the file and the
    /// record are durable.
    ///
    /// An empty file or one larger than [`MAX_ATTACHMENT_BYTES`] is
    /// [`ConversationError::Invalid`]. The caller has checked that the conversation exists
    /// and that the sender is one of its parties.
    pub async fn store_attachment(
        &self,
        conversation_id: u64,
        name: &str,
        mime: &str,
        bytes: Vec<u8>,
    ) -> Result<AttachmentMeta, ConversationError> {
        if bytes.len() > MAX_ATTACHMENT_BYTES {
            return Err(ConversationError::Invalid(
                "attachment is larger than 2 MB".to_string(),
            ));
        }
        if bytes.is_empty() {
            return Err(ConversationError::Invalid(
                "attachment is empty".to_string(),
            ));
        }
        let sniffed = sniff_image(&bytes);
        let meta = AttachmentMeta {
            id: random_id(),
            name: sanitize_name(name),
            mime: sniffed.map_or_else(|| safe_mime(mime), str::to_string),
            size: bytes.len() as u64,
            image: sniffed.is_some(),
        };
        let root = self.dir.clone();
        let id = meta.id.clone();
        tokio::task::spawn_blocking(move || write_file(&root, conversation_id, &id, &bytes))
            .await
            .map_err(|e| StoreError::Io(format!("attachment task failed: {e}")))?
            .map_err(|e| StoreError::Io(format!("cannot write attachment: {e}")))?;
        self.store.put_attachment(conversation_id, &meta).await?;
        Ok(meta)
    }

    /// The metadata and bytes of one attachment of a conversation.
    ///
    /// An id that is not one this module could have generated is refused before it comes
    /// near the file system, so `../` and friends never reach a path.
    pub async fn read_attachment(
        &self,
        conversation_id: u64,
        id: &str,
    ) -> Result<(AttachmentMeta, Vec<u8>), ConversationError> {
        if !valid_attachment_id(id) {
            return Err(ConversationError::NotFound("attachment".to_string()));
        }
        let meta = self
            .store
            .attachment(conversation_id, id)
            .await?
            .ok_or_else(|| ConversationError::NotFound("attachment".to_string()))?;
        let path = self.dir.join(conversation_id.to_string()).join(&meta.id);
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            StoreError::Io(format!("cannot read attachment {}: {e}", path.display()))
        })?;
        Ok((meta, bytes))
    }
}

/// Writes the file under a temporary name, fsyncs it, renames it into place and fsyncs the
/// directories whose entries changed, so the file survives a crash once this returns.
fn write_file(root: &Path, conversation_id: u64, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = root.join(conversation_id.to_string());
    let created = !dir.is_dir();
    fs::create_dir_all(&dir)?;
    // A '.' never occurs in an id, so a temporary file can never be read as an attachment.
    let part = dir.join(format!("{id}.part"));
    {
        let mut file = File::create(&part)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&part, dir.join(id))?;
    sync_dir(&dir)?;
    if created {
        sync_dir(root)?;
        if let Some(data_dir) = root.parent() {
            sync_dir(data_dir)?;
        }
    }
    Ok(())
}

/// Makes a directory's entries durable. Only Unix can open a directory to fsync it.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// 16 random bytes in unpadded base64url: 22 characters of `[A-Za-z0-9_-]`.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `id` has the shape of a generated attachment id: 1 to 64 characters of
/// `[A-Za-z0-9_-]`. This is what keeps ids from ever naming another path.
pub fn valid_attachment_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The display name of an uploaded file: the last component of whatever path the sender
/// gave, without control or bidirectional-override characters (which can disguise an
/// extension), with card numbers masked, trimmed, at most [`MAX_ATTACHMENT_NAME_CHARS`]
/// characters (a long name keeps its extension), and `attachment` if nothing is left.
pub fn sanitize_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .collect();
    let cleaned = mask_card_numbers(cleaned.trim()).into_owned();
    // "." and ".." are path components, not names.
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        return FALLBACK_NAME.to_string();
    }
    if cleaned.chars().count() <= MAX_ATTACHMENT_NAME_CHARS {
        return cleaned;
    }
    // Keep a short extension so the shortened name still says what kind of file it is.
    let extension = cleaned
        .rfind('.')
        .map(|dot| &cleaned[dot..])
        .filter(|ext| ext.chars().count() <= 16);
    match extension {
        Some(ext) => {
            let keep = MAX_ATTACHMENT_NAME_CHARS - ext.chars().count();
            let stem: String = cleaned[..cleaned.len() - ext.len()]
                .chars()
                .take(keep)
                .collect();
            format!("{}{ext}", stem.trim_end())
        }
        None => cleaned.chars().take(MAX_ATTACHMENT_NAME_CHARS).collect(),
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The image type of `bytes` by their magic numbers, if they are a PNG, JPEG, GIF or WebP.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The type recorded for a file that is not a sniffed image.
///
/// A declared `image/*` type is dropped (the bytes said otherwise; SVG in particular can carry
/// script), as are types a browser would render as a document or run; parameters are
/// dropped, and anything that is not a plain `type/subtype` becomes
/// `application/octet-stream`.
fn safe_mime(declared: &str) -> String {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let well_formed = essence.len() <= 100
        && essence.split_once('/').is_some_and(|(t, s)| {
            let token = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            token(t) && token(s)
        });
    let active = essence.starts_with("image/")
        || essence.starts_with("text/html")
        || essence.contains("javascript")
        || essence.contains("ecmascript")
        || essence.contains("xml")
        || essence == "multipart/x-mixed-replace";
    if well_formed && !active {
        essence
    } else {
        OCTET_STREAM.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redb_store::RedbStore;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn attachments() -> (tempfile::TempDir, Attachments) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open_blocking(dir.path()).unwrap());
        let attachments = Attachments::new(dir.path(), store);
        (dir, attachments)
    }

    #[tokio::test]
    async fn stores_and_reads_back() {
        let (dir, attachments) = attachments();
        let meta = attachments
            .store_attachment(7, "shot.png", "application/pdf", PNG.to_vec())
            .await
            .unwrap();
        assert_eq!(meta.name, "shot.png");
        assert!(meta.image, "the bytes decide, not the declared type");
        assert_eq!(meta.mime, "image/png");
        assert_eq!(meta.size, PNG.len() as u64);
        assert!(valid_attachment_id(&meta.id) && meta.id.len() == 22);
        let path = dir.path().join("attachments").join("7").join(&meta.id);
        assert_eq!(std::fs::read(&path).unwrap(), PNG);
        let no_leftovers = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".part"));
        assert!(no_leftovers);

        let (read_meta, bytes) = attachments.read_attachment(7, &meta.id).await.unwrap();
        assert_eq!((read_meta, bytes.as_slice()), (meta.clone(), PNG));
        // The same id under another conversation is not there.
        let err = attachments.read_attachment(8, &meta.id).await.unwrap_err();
        assert!(matches!(err, ConversationError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn size_limit() {
        let (_dir, attachments) = attachments();
        let at_limit = vec![b'a'; MAX_ATTACHMENT_BYTES];
        let meta = attachments
            .store_attachment(1, "big.txt", "text/plain", at_limit)
            .await
            .unwrap();
        assert_eq!(meta.size, MAX_ATTACHMENT_BYTES as u64);
        let err = attachments
            .store_attachment(
                1,
                "big.txt",
                "text/plain",
                vec![0; MAX_ATTACHMENT_BYTES + 1],
            )
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "attachment is larger than 2 MB");
        let err = attachments
            .store_attachment(1, "empty.txt", "text/plain", Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ConversationError::Invalid(_)), "{err:?}");
    }

    #[tokio::test]
    async fn traversal_and_malformed_ids_are_refused() {
        let (dir, attachments) = attachments();
        // A file outside any conversation's directory that a traversal would like to read.
        std::fs::write(dir.path().join("secret"), b"nope").unwrap();
        for id in [
            "../secret",
            "..",
            ".",
            "../../secret",
            "a/b",
            "a\\b",
            "%2e%2e%2fsecret",
            "",
            "abc.part",
            "x\0y",
            &"a".repeat(65),
            "ünïcode",
        ] {
            let err = attachments.read_attachment(1, id).await.unwrap_err();
            assert!(
                matches!(err, ConversationError::NotFound(_)),
                "id {id:?}: {err:?}"
            );
        }
    }

    #[test]
    fn name_sanitising_table() {
        let long_stem = "x".repeat(200);
        let cases: &[(&str, &str)] = &[
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Users\\ada\\photo.jpg", "photo.jpg"),
            ("/absolute/path/", FALLBACK_NAME),
            ("..", FALLBACK_NAME),
            ("", FALLBACK_NAME),
            ("   ", FALLBACK_NAME),
            ("bad\nname\t.txt", "badname.txt"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
            ("  spaced.txt  ", "spaced.txt"),
            ("emoji 😀 файл.txt", "emoji 😀 файл.txt"),
            ("card 4111111111111111.txt", "card ************1111.txt"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize_name(input), *expected, "input {input:?}");
        }
        let long = sanitize_name(&format!("{long_stem}.tar.gz"));
        assert_eq!(long.chars().count(), MAX_ATTACHMENT_NAME_CHARS);
        assert!(long.ends_with("x.gz"), "{long}");
        let no_ext = sanitize_name(&"é".repeat(300));
        assert_eq!(no_ext.chars().count(), MAX_ATTACHMENT_NAME_CHARS);
    }

    #[test]
    fn image_sniffing_table() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (PNG, Some("image/png")),
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], Some("image/jpeg")),
            (b"GIF89a\x01\0\x01\0", Some("image/gif")),
            (b"GIF87a\x01\0\x01\0", Some("image/gif")),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some("image/webp")),
            (b"RIFF\x24\0\0\0WAVEfmt ", None),
            (b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>", None),
            (b"<html><script>alert(1)</script>", None),
            (b"%PDF-1.7", None),
            (b"\x89PN", None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(sniff_image(bytes), *expected, "bytes {bytes:?}");
        }
    }

    #[test]
    fn declared_types_table() {
        let cases: &[(&str, &str)] = &[
            ("application/pdf", "application/pdf"),
            ("Text/Plain; charset=utf-8", "text/plain"),
            ("image/png", OCTET_STREAM), // not sniffed as an image, so not one
            ("image/svg+xml", OCTET_STREAM),
            ("text/html", OCTET_STREAM),
            ("application/xhtml+xml", OCTET_STREAM),
            ("text/javascript", OCTET_STREAM),
            ("", OCTET_STREAM),
            ("nonsense", OCTET_STREAM),
            ("a/b/c", OCTET_STREAM),
            ("text/plain\r\nX-Evil: 1", OCTET_STREAM),
        ];
        for (declared, expected) in cases {
            assert_eq!(safe_mime(declared), *expected, "declared {declared:?}");
        }
    }
}
