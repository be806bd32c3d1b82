//! The on-disk format: segment files of length-prefixed records, and the manifest
//! that lists them with their checksums.
//!
//! A segment starts with [`MAGIC`]; each record is, little endian:
//! `u64 sequence, i64 stored-at unix nanoseconds, u32 subject length, subject,
//! u32 header count, (u32 name length, name, u32 value length, value)*,
//! u32 payload length, payload`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"SHLBAK01";

/// The manifest's `format` value this version writes and reads.
pub const FORMAT: &str = "shardline-backup/1";

/// The manifest's file name. It is written last: a directory without it is an
/// interrupted backup.
pub const MANIFEST: &str = "manifest.json";

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Longest subject or header field a record may declare (a corrupt length must not
/// make the reader allocate gigabytes).
const MAX_FIELD: u32 = 64 * 1024 * 1024;

/// One message as backed up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its sequence in the stream.
    pub sequence: u64,
    /// When the stream stored it, unix nanoseconds (kept for the record; a restore
    /// cannot set it).
    pub stored_at_nanos: i64,
    /// Its subject.
    pub subject: String,
    /// Its headers, each value in order.
    pub headers: Vec<(String, String)>,
    /// Its payload.
    pub payload: Bytes,
}

impl Record {
    /// The headers as async-nats takes them.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(name.as_str(), value.as_str());
        }
        map
    }

    /// The headers of `map`, in a stable order (by name, then as stored).
    pub fn headers_of(map: Option<&HeaderMap>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = map
            .into_iter()
            .flat_map(|m| m.iter())
            .flat_map(|(name, values)| {
                let name: &str = name.as_ref();
                let name = name.to_owned();
                values
                    .iter()
                    .map(move |v| (name.clone(), v.as_str().to_owned()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// What the manifest says about one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// File name inside the backup directory.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Records in it.
    pub messages: u64,
}

/// `manifest.json`: what was backed up, and how to check it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// `stream` or `kv`.
    pub kind: String,
    /// The stream's name (`KV_<bucket>` for a bucket).
    pub stream: String,
    /// The bucket's name, for a KV backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Unix milliseconds when the backup started.
    pub created_at_ms: u64,
    /// The server's version then.
    pub server_version: String,
    /// The stream's configuration as the server reported it.
    pub config: serde_json::Value,
    /// Sequence of the first message backed up (0 when none).
    pub first_sequence: u64,
    /// The stream's last sequence when the backup started: messages after it are not
    /// in the backup.
    pub last_sequence: u64,
    /// Messages backed up.
    pub messages: u64,
    /// The segments, in order.
    pub segments: Vec<Segment>,
}

/// A writer that hashes and counts what goes through it.
pub struct HashingWriter {
    inner: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl HashingWriter {
    /// Creates `path` (it must not exist) and writes [`MAGIC`].
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let mut writer = Self {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        writer.write_all(MAGIC)?;
        Ok(writer)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    /// Flushes, syncs to disk and returns the size and the hex SHA-256.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        self.inner.flush()?;
        self.inner.get_ref().sync_all()?;
        Ok((self.bytes, hex(&self.hasher.finalize())))
    }

    /// Appends one record.
    pub fn record(&mut self, r: &Record) -> io::Result<()> {
        self.write_all(&r.sequence.to_le_bytes())?;
        self.write_all(&r.stored_at_nanos.to_le_bytes())?;
        self.field(r.subject.as_bytes())?;
        self.write_all(&len32(r.headers.len())?.to_le_bytes())?;
        for (name, value) in &r.headers {
            self.field(name.as_bytes())?;
            self.field(value.as_bytes())?;
        }
        self.field(&r.payload)
    }

    fn field(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(&len32(bytes.len())?.to_le_bytes())?;
        self.write_all(bytes)
    }
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "field over 4 GiB"))
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the records of one segment, hashing every byte.
pub struct SegmentReader {
    inner: BufReader<File>,
    hasher: Sha256,
    bytes: u64,
}

impl SegmentReader {
    /// Opens `path` and checks [`MAGIC`].
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut reader = Self {
            inner: BufReader::with_capacity(1 << 20, File::open(path)?),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut magic = [0u8; 8];
        reader.exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a Shardline backup segment",
            ));
        }
        Ok(reader)
    }

    fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.hasher.update(&*buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn field(&mut self) -> io::Result<Vec<u8>> {
        let len = self.u32()?;
        if len > MAX_FIELD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a field claims {len} bytes"),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        self.exact(&mut buf)?;
        Ok(buf)
    }

    fn text(&mut self) -> io::Result<String> {
        String::from_utf8(self.field()?)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a name is not UTF-8"))
    }

    /// The next record, or `None` at the end of the file.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` for a record cut short, `InvalidData` for one that cannot be.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        let mut seq = [0u8; 8];
        match self.inner.read(&mut seq[..1])? {
            0 => return Ok(None),
            _ => {
                self.hasher.update(&seq[..1]);
                self.bytes += 1;
            }
        }
        self.exact(&mut seq[1..])?;
        let mut at = [0u8; 8];
        self.exact(&mut at)?;
        let subject = self.text()?;
        let count = self.u32()?;
        let mut headers = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let name = self.text()?;
            let value = self.text()?;
            headers.push((name, value));
        }
        let payload = Bytes::from(self.field()?);
        Ok(Some(Record {
            sequence: u64::from_le_bytes(seq),
            stored_at_nanos: i64::from_le_bytes(at),
            subject,
            headers,
            payload,
        }))
    }

    /// Bytes read so far and the hex SHA-256 of them.
    pub fn digest(self) -> (u64, String) {
        (self.bytes, hex(&self.hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_the_digest_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data-000001.bin");
        let records = vec![
            Record {
                sequence: 7,
                stored_at_nanos: 1_700_000_000_000_000_000,
                subject: "deadletter.w.events.x".into(),
                headers: vec![("A".into(), "1".into()), ("A".into(), "2".into())],
                payload: Bytes::from_static(b"{\"x\":1}"),
            },
            Record {
                sequence: 9,
                stored_at_nanos: 0,
                subject: "s".into(),
                headers: vec![],
                payload: Bytes::new(),
            },
        ];
        let mut w = HashingWriter::create(&path).unwrap();
        for r in &records {
            w.record(r).unwrap();
        }
        let (size, sha) = w.finish().unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        let mut r = SegmentReader::open(&path).unwrap();
        let mut read = Vec::new();
        while let Some(record) = r.next_record().unwrap() {
            read.push(record);
        }
        assert_eq!(read, records);
        assert_eq!(r.digest(), (size, sha));

        // Cut short: the last record is refused, not read as something else.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let mut r = SegmentReader::open(&path).unwrap();
        assert!(r.next_record().unwrap().is_some());
        assert!(r.next_record().is_err());
    }
}
