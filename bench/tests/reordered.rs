//! The routing read is correct whatever order Discord writes the envelope's fields
//! in, checked on every frame of the recorded mix against a plain serde_json oracle.

use serde_json::Value;
use shardline_bench::fixture;
use shardline_gateway::{Frame, parse, parse_with_serde};

const ORDERS: [[usize; 4]; 6] = [
    [0, 1, 2, 3],
    [3, 2, 1, 0],
    [2, 0, 3, 1],
    [1, 3, 0, 2],
    [3, 0, 1, 2],
    [0, 3, 2, 1],
];

#[test]
fn routing_read_ignores_field_order() {
    for (i, event) in fixture::load().iter().enumerate() {
        let seq = i as u64 + 1;
        let fields = [
            r#""op":0"#.to_owned(),
            format!(r#""s":{seq}"#),
            format!(r#""t":"{}""#, event.name),
            format!(r#""d":{}"#, event.data),
        ];
        let d: Value = serde_json::from_str(&event.data).expect("fixture json");
        let key = if event.name.starts_with("GUILD_") && !event.name.starts_with("GUILD_MEMBER") {
            "id"
        } else {
            "guild_id"
        };
        let want_guild = d[key].as_str().and_then(|g| g.parse::<u64>().ok());
        for order in ORDERS {
            let frame = format!("{{{}}}", order.map(|k| fields[k].as_str()).join(","));
            let fast = parse(&frame);
            assert_eq!(fast, parse_with_serde(&frame), "fast path = serde path");
            let Ok(Frame::Dispatch(dispatch)) = fast else {
                panic!("not a dispatch: {frame:.200}");
            };
            assert_eq!(dispatch.event, &*event.name);
            assert_eq!(dispatch.sequence, seq);
            assert_eq!(
                &frame[dispatch.data.clone()],
                &*event.data,
                "d byte for byte"
            );
            assert_eq!(
                dispatch.facts.guild_id, want_guild,
                "{} in {order:?}",
                event.name
            );
        }
    }
}
