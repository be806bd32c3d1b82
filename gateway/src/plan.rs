//! Which shards this process runs, and how many identifies Discord allows.

use crate::Config;
use crate::error::{Error, ErrorKind};

/// The shards of this process.
pub(crate) struct Plan {
    pub shard_total: u32,
    pub shard_ids: Vec<u32>,
    pub max_concurrency: u16,
}

pub(crate) async fn plan(config: &Config) -> Result<Plan, Error> {
    let (shard_total, max_concurrency) = match (config.shard_total, &config.gateway_url) {
        (Some(total), _) => (total, 1),
        (None, Some(_)) => {
            return Err(Error::new(
                ErrorKind::Config,
                "SHARD_TOTAL is required when DISCORD_GATEWAY_URL is set",
            ));
        }
        (None, None) => recommended(config).await?,
    };
    if shard_total == 0 {
        return Err(Error::new(
            ErrorKind::Config,
            "SHARD_TOTAL must be at least 1",
        ));
    }
    let shard_ids = match &config.shard_ids {
        Some(ids) => ids.ids().to_vec(),
        None => (0..shard_total).collect(),
    };
    if let Some(bad) = shard_ids.iter().find(|&&id| id >= shard_total) {
        return Err(Error::new(
            ErrorKind::Config,
            format!("shard {bad} is not below SHARD_TOTAL {shard_total}"),
        ));
    }
    Ok(Plan {
        shard_total,
        shard_ids,
        max_concurrency: config.max_concurrency.unwrap_or(max_concurrency).max(1),
    })
}

async fn recommended(config: &Config) -> Result<(u32, u16), Error> {
    let client = twilight_http::Client::new(config.token.expose().to_owned());
    let info = client
        .gateway()
        .authed()
        .await
        .map_err(|e| Error::new(ErrorKind::Discord, format!("GET /gateway/bot: {e}")))?
        .model()
        .await
        .map_err(|e| Error::new(ErrorKind::Discord, format!("GET /gateway/bot body: {e}")))?;
    let concurrency = info.session_start_limit.max_concurrency;
    tracing::info!(
        shards = info.shards,
        max_concurrency = concurrency,
        "Discord's recommendation"
    );
    Ok((info.shards, concurrency))
}
