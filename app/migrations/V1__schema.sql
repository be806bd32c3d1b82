-- The reference application's records: guilds (communities), their roles and
-- members (profiles), and the eligibility rules that map a condition to a role.
--
-- Discord ids are 64-bit unsigned; they are stored as BIGINT with the same bits
-- (every id Discord has issued, and every one until 2084, is below 2^63).
--
-- Rows written from gateway events carry the version of the event that last wrote
-- them (event_at: Unix nanoseconds when the gateway read it; event_session and
-- event_seq: the gateway session and Discord's sequence in it). A write applies
-- only when its event is newer: within one session by sequence, across sessions by
-- read time. Nothing is ever deleted by an event: a guild the bot left is inactive,
-- a member who left is absent.

CREATE TABLE guilds (
    guild_id      BIGINT      PRIMARY KEY,
    name          TEXT        NOT NULL DEFAULT '',
    active        BOOLEAN     NOT NULL,
    available     BOOLEAN     NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at       TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    event_at      BIGINT      NOT NULL DEFAULT 0,
    event_session TEXT,
    event_seq     BIGINT      NOT NULL DEFAULT 0
);

-- A guild's roles as its last GUILD_CREATE listed them. Rules may only name roles
-- listed here. `assignable` turns false when Discord refused to apply the role
-- (403: above the bot's highest role, or no Manage Roles), so it is not tried for
-- every member; the next GUILD_CREATE of the guild clears it.
CREATE TABLE guild_roles (
    guild_id   BIGINT  NOT NULL REFERENCES guilds (guild_id),
    role_id    BIGINT  NOT NULL,
    present    BOOLEAN NOT NULL DEFAULT true,
    assignable BOOLEAN NOT NULL DEFAULT true,
    PRIMARY KEY (guild_id, role_id)
);

CREATE TABLE members (
    guild_id      BIGINT      NOT NULL REFERENCES guilds (guild_id),
    user_id       BIGINT      NOT NULL,
    present       BOOLEAN     NOT NULL,
    -- The roles Discord last reported (sorted).
    roles         BIGINT[]    NOT NULL DEFAULT '{}',
    verified      BOOLEAN     NOT NULL DEFAULT false,
    verified_at   TIMESTAMPTZ,
    joined_at     TIMESTAMPTZ,
    left_at       TIMESTAMPTZ,
    -- The managed roles the rules give the member (sorted), and how many rules
    -- it meets (its tier); NULL until first checked.
    desired_roles BIGINT[],
    tier          SMALLINT,
    checked_at    TIMESTAMPTZ,
    -- The managed roles the bot last applied (sorted); NULL when unknown (never
    -- synced since the member joined, or a /resync asked to compare with what
    -- Discord reports instead).
    applied_roles BIGINT[],
    synced_at     TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    event_at      BIGINT      NOT NULL DEFAULT 0,
    event_session TEXT,
    event_seq     BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (guild_id, user_id)
);

-- /resync walks a guild's present members.
CREATE INDEX members_present ON members (guild_id) WHERE present;

-- A condition mapped to a role. A row that cannot be evaluated is refused when it
-- is written, never discovered per member: an unknown kind, a negative age, fields
-- that do not match the kind, a role (granted or required) the guild does not
-- have, or @everyone (its id is the guild's).
CREATE TABLE rules (
    rule_id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    guild_id             BIGINT      NOT NULL REFERENCES guilds (guild_id),
    role_id              BIGINT      NOT NULL,
    kind                 TEXT        NOT NULL,
    min_account_age_days INTEGER,
    required_role_id     BIGINT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT rules_kind_known
        CHECK (kind IN ('account_age', 'verified', 'holds_role')),
    CONSTRAINT rules_account_age_not_negative
        CHECK (min_account_age_days >= 0),
    -- Unknown kinds are left to rules_kind_known, so the error names the right rule.
    CONSTRAINT rules_fields_match_kind CHECK (CASE kind
        WHEN 'account_age' THEN min_account_age_days IS NOT NULL AND required_role_id IS NULL
        WHEN 'verified' THEN min_account_age_days IS NULL AND required_role_id IS NULL
        WHEN 'holds_role' THEN required_role_id IS NOT NULL AND min_account_age_days IS NULL
        ELSE true
    END),
    CONSTRAINT rules_role_not_everyone CHECK (role_id <> guild_id),
    CONSTRAINT rules_role_is_a_guild_role
        FOREIGN KEY (guild_id, role_id) REFERENCES guild_roles (guild_id, role_id),
    CONSTRAINT rules_required_role_is_a_guild_role
        FOREIGN KEY (guild_id, required_role_id) REFERENCES guild_roles (guild_id, role_id)
);

CREATE INDEX rules_by_guild ON rules (guild_id);
