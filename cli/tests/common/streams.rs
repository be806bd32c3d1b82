//! Streams full of messages worth backing up, and a message-by-message snapshot to
//! compare a restore with.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use shardline_cli::backup::Record;
use shardline_proto::headers;
use shardline_proto::topology::StreamSpec;

/// One stored message, as compared after a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

/// The NATS header block async-nats sends for `map`, to size a message exactly.
fn header_block_len(map: &HeaderMap) -> usize {
    let mut len = "NATS/1.0\r\n".len() + 2;
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        for value in values {
            len += name.len() + 2 + value.as_str().len() + 2;
        }
    }
    len
}

/// Fills `spec`'s stream (created as declared) with `count` messages on its
/// subjects; every `big_every`-th is exactly the server's `max_payload` (headers
/// included). Then deletes every `delete_every`-th and the very last, as replays
/// and operators do, leaving gaps. Returns how many are left.
pub async fn fill(
    client: &async_nats::Client,
    spec: &StreamSpec,
    count: u64,
    big_every: u64,
    delete_every: u64,
) -> u64 {
    let js = jetstream::new(client.clone());
    shardline_jetstream::reconcile_stream(&js, spec, Default::default())
        .await
        .unwrap();
    let max_payload = client.server_info().max_payload;
    let prefix = spec.subjects[0].trim_end_matches('>');
    let mut acks = Vec::new();
    for i in 1..=count {
        let subject = format!("{prefix}consumer-{}.events.member.join", i % 3);
        let mut map = HeaderMap::new();
        map.insert(
            headers::MSG_ID,
            format!("dl:event-worker:EVENTS:{i}").as_str(),
        );
        map.insert(headers::DEAD_LETTER_KIND, "terminal");
        map.insert(headers::DEAD_LETTER_REASON, format!("reason {i}").as_str());
        // Two values of one name: both must come back, in order.
        map.append("Trace", "first");
        map.append("Trace", format!("second-{i}").as_str());
        let payload = if i % big_every == 0 {
            let size = max_payload - header_block_len(&map);
            Bytes::from(vec![b'a' + (i % 26) as u8; size])
        } else {
            Bytes::from(format!(
                r#"{{"guild_id":"{i}","user":{{"id":"{}"}}}}"#,
                i * 7
            ))
        };
        acks.push(
            js.publish_with_headers(subject, map, payload)
                .await
                .unwrap(),
        );
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    // Ids repeat in real streams when their messages were stored further apart
    // than the duplicate window (a dead letter of a stream that was recreated).
    // Shrink the window, wait it out (no event marks a window's end), publish the
    // last three ids again, and put the declared window back.
    let mut config = js
        .get_stream(spec.name)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    config.duplicate_window = std::time::Duration::from_millis(100);
    js.update_stream(config).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in count - 2..=count {
        let mut map = HeaderMap::new();
        map.insert(
            headers::MSG_ID,
            format!("dl:event-worker:EVENTS:{i}").as_str(),
        );
        let ack = js
            .publish_with_headers(format!("{prefix}again"), map, Bytes::from_static(b"again"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!ack.duplicate);
    }
    shardline_jetstream::reconcile_stream(&js, spec, Default::default())
        .await
        .unwrap();
    let count = count + 3;
    let stream = js.get_stream(spec.name).await.unwrap();
    let mut deleted = 0;
    for seq in (delete_every..count).step_by(delete_every as usize) {
        stream.delete_message(seq).await.unwrap();
        deleted += 1;
    }
    stream.delete_message(count).await.unwrap();
    count - deleted - 1
}

/// Every message of `stream`, by sequence (read with direct gets: nothing consumed).
pub async fn snapshot(js: &jetstream::Context, stream: &str) -> Vec<Stored> {
    let mut s = js.get_stream(stream).await.unwrap();
    let state = s.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        match s.get_raw_message(seq).await {
            Ok(m) => out.push(Stored {
                sequence: m.sequence,
                subject: m.subject.to_string(),
                headers: Record::headers_of(Some(&m.headers)),
                payload: m.payload,
            }),
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {}
            Err(e) => panic!("reading {stream} {seq}: {e}"),
        }
    }
    out
}

/// Asserts two snapshots are equal message by message, naming the first difference.
#[track_caller]
pub fn assert_same(restored: &[Stored], original: &[Stored]) {
    assert_eq!(restored.len(), original.len(), "message count");
    for (r, o) in restored.iter().zip(original) {
        assert_eq!(r.sequence, o.sequence, "sequence");
        assert_eq!(r.subject, o.subject, "subject of {}", o.sequence);
        assert_eq!(r.headers, o.headers, "headers of {}", o.sequence);
        assert!(r.payload == o.payload, "payload of {} differs", o.sequence);
    }
}
