//! Reading a request's path the way Discord's rate limiter does: the route template
//! (`/channels/:id/messages`, also the metrics label), the top-level resource its
//! bucket is kept per, and its class (interaction callback, token-authorized webhook,
//! or a bot request). A path that is not a well-formed Discord API path is refused
//! here, before anything is counted or sent.

use axum::http::Method;
use sha2::{Digest, Sha256};

/// Longest path accepted (Discord's own are far shorter).
pub const MAX_PATH_LEN: usize = 2048;

/// Which limits and defaults apply to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `POST /interactions/{id}/{token}/callback`: not bound by the global limit.
    Callback,
    /// `/webhooks/{id}/{token}...`: authorized by the token in the path (interaction
    /// follow-ups and edits are these); limited per webhook bucket, not by the global
    /// limit.
    Webhook,
    /// Everything else: sent with a bot token.
    Bot,
}

impl RouteClass {
    /// Every class, for metrics registered at zero.
    pub const ALL: [RouteClass; 3] = [Self::Callback, Self::Webhook, Self::Bot];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "interaction_callback",
            Self::Webhook => "webhook",
            Self::Bot => "bot",
        }
    }
}

/// A request's route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The template: ids as `:id`, tokens as `:token`, emoji as `:emoji`, codes as
    /// `:code`, without the `/api/v{n}` prefix.
    pub template: String,
    /// `METHOD template`: the key a bucket id is learned for.
    pub key: String,
    /// The top-level resource (`channels/{id}`, `guilds/{id}`, `webhooks/{id}/{token
    /// digest}`, `interactions/{id}/{token digest}`), or empty. Tokens never appear.
    pub major: String,
    /// Its class.
    pub class: RouteClass,
}

/// Why a path is not a Discord API path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not under `/api/v{n}/`.
    NotApi,
    /// Longer than [`MAX_PATH_LEN`].
    TooLong,
    /// An empty, `.` or `..` segment, a character Discord's paths never contain, or
    /// an escaped `/`, `.`, `\` or NUL.
    BadSegment,
}

impl PathError {
    /// For the refusal's message.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NotApi => "not a Discord API path (/api/v{n}/...)",
            Self::TooLong => "the path is too long",
            Self::BadSegment => {
                "a path segment is empty, a dot segment, or has characters Discord paths never have"
            }
        }
    }
}

/// Parses `path` (without the query) for `method`.
///
/// # Errors
///
/// A [`PathError`] when the path is not a well-formed Discord API path.
pub fn parse(method: &Method, path: &str) -> Result<Route, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let rest = path.strip_prefix("/api/v").ok_or(PathError::NotApi)?;
    let (version, rest) = rest.split_once('/').ok_or(PathError::NotApi)?;
    if version.is_empty() || version.len() > 2 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PathError::NotApi);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| !segment_ok(s)) {
        return Err(PathError::BadSegment);
    }
    let mut template = String::with_capacity(rest.len() + 8);
    for (i, segment) in segments.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| segments[p]);
        let before = i.checked_sub(2).map(|p| segments[p]);
        template.push('/');
        template.push_str(match (before, previous, *segment) {
            (Some("webhooks" | "interactions"), _, _) if i == 2 => ":token",
            (_, Some("reactions"), _) => ":emoji",
            (_, Some("invites" | "templates"), s) if !is_snowflake(s) => ":code",
            (_, _, s) if is_snowflake(s) => ":id",
            (_, _, s) => s,
        });
    }
    let major = match segments.as_slice() {
        ["channels" | "guilds", id, ..] if is_snowflake(id) => format!("{}/{id}", segments[0]),
        ["webhooks" | "interactions", id, token, ..] if is_snowflake(id) => {
            format!("{}/{id}/{}", segments[0], digest(token))
        }
        ["webhooks", id] if is_snowflake(id) => format!("webhooks/{id}"),
        _ => String::new(),
    };
    let class = match segments.as_slice() {
        ["interactions", _, _, "callback"] if method == Method::POST => RouteClass::Callback,
        ["webhooks", _, _, ..] => RouteClass::Webhook,
        _ => RouteClass::Bot,
    };
    let key = format!("{method} {template}");
    Ok(Route {
        template,
        key,
        major,
        class,
    })
}

fn is_snowflake(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

fn segment_ok(s: &str) -> bool {
    if s.is_empty() || s == "." || s == ".." {
        return false;
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                let Some(value) = hex
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                else {
                    return false;
                };
                // An escaped separator or dot could change the path Discord sees.
                if matches!(value, b'/' | b'.' | b'\\' | 0) {
                    return false;
                }
                i += 3;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' | b':' => {
                i += 1
            }
            _ => return false,
        }
    }
    true
}

/// A short, stable digest of a secret (tokens), for keys and identities.
pub fn digest(secret: &str) -> String {
    let hash = Sha256::digest(secret.as_bytes());
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Route {
        parse(&method, path).unwrap()
    }

    #[test]
    fn templates_hide_ids_tokens_and_emoji() {
        let r = route(Method::POST, "/api/v10/channels/123/messages");
        assert_eq!(r.template, "/channels/:id/messages");
        assert_eq!(
            (r.major.as_str(), r.class),
            ("channels/123", RouteClass::Bot)
        );
        assert_eq!(r.key, "POST /channels/:id/messages");
        let r = route(
            Method::PUT,
            "/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/@me",
        );
        assert_eq!(
            r.template,
            "/channels/:id/messages/:id/reactions/:emoji/@me"
        );
        let r = route(Method::PUT, "/api/v10/guilds/7/members/8/roles/9");
        assert_eq!(r.template, "/guilds/:id/members/:id/roles/:id");
        assert_eq!(r.major, "guilds/7");
        assert_eq!(
            route(Method::GET, "/api/v10/invites/abcDEF").template,
            "/invites/:code"
        );
    }

    #[test]
    fn tokens_never_reach_a_template_or_a_key() {
        let token = "aW50ZXJhY3Rpb246MTIz-secret_token";
        let r = route(
            Method::POST,
            &format!("/api/v10/interactions/5/{token}/callback"),
        );
        assert_eq!(r.template, "/interactions/:id/:token/callback");
        assert_eq!(r.class, RouteClass::Callback);
        assert!(!r.major.contains(token) && r.major.starts_with("interactions/5/"));
        let r = route(
            Method::PATCH,
            &format!("/api/v10/webhooks/6/{token}/messages/@original"),
        );
        assert_eq!(r.template, "/webhooks/:id/:token/messages/@original");
        assert_eq!(r.class, RouteClass::Webhook);
        assert!(!r.major.contains(token));
        assert_eq!(
            route(Method::GET, "/api/v10/webhooks/6").class,
            RouteClass::Bot
        );
    }

    #[test]
    fn malformed_paths_are_refused() {
        let bad = [
            ("/channels/1/messages", PathError::NotApi),
            ("/api/v10", PathError::NotApi),
            ("/api/vx/channels", PathError::NotApi),
            ("/api/v10/channels//messages", PathError::BadSegment),
            ("/api/v10/channels/../guilds", PathError::BadSegment),
            ("/api/v10/channels/1%2Fmessages", PathError::BadSegment),
            ("/api/v10/channels/%2e%2e", PathError::BadSegment),
            ("/api/v10/channels/1/messages/", PathError::BadSegment),
            ("/api/v10/channels/%zz", PathError::BadSegment),
            ("/api/v10/channels/a b", PathError::BadSegment),
        ];
        for (path, error) in bad {
            assert_eq!(parse(&Method::GET, path), Err(error), "{path}");
        }
        let long = format!("/api/v10/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(parse(&Method::GET, &long), Err(PathError::TooLong));
    }
}
