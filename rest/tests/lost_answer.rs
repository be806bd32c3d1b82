//! A KV write of the lease holder whose answer is lost (a timeout on a busy machine)
//! may still have landed: the next write then meets a revision it did not expect.
//! When the value there is the holder's own, it is still the holder: it must not
//! step down (and leave the fleet without a sender until its own lease expires), and
//! its later refreshes and state copies go on from the revision found.

mod common;

use async_nats::jetstream;
use common::{PATIENCE, config, holder, stack};
use shardline_discord_sim::RestLimits;
use shardline_proto::rest::{LEASE, LEASE_KEY, STATE, STATE_KEY};
use shardline_testkit::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_landed_unanswered_keeps_the_holder() {
    let (nats, sim) = stack(RestLimits::default()).await;
    let proxy = holder(config(&sim, &nats)).await;
    let js = jetstream::new(nats.client().await);
    let lease = js.get_key_value(LEASE.bucket).await.unwrap();
    let state = js.get_key_value(STATE.bucket).await.unwrap();

    // The holder's own values written again, as its lost writes would have been.
    let mut landed = Vec::new();
    for (store, key) in [(&lease, LEASE_KEY), (&state, STATE_KEY)] {
        let entry = store
            .entry(key)
            .await
            .unwrap()
            .expect("written by the holder");
        let revision = store.put(key, entry.value).await.unwrap();
        landed.push((store, key, revision));
    }

    // Both go on from there: each key written again by the proxy, twice, and the
    // proxy the holder at every look.
    for (store, key, revision) in landed {
        eventually(&format!("{key} written again"), PATIENCE, || async {
            assert!(proxy.is_holder(), "stepped down after its own write landed");
            let now = store.entry(key).await.ok()??.revision;
            (now >= revision + 2).then_some(())
        })
        .await;
    }
    assert!(proxy.is_holder());
    proxy.stop().await.unwrap();
}
