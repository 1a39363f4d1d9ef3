//! `net-mesh token mint` / `net-mesh token inspect`: permission tokens (docs/FORMAT.md §5.5) on
//! the command line, in their text form (`nmt1…`, a chain's links joined with `.`).
//!
//! `mint` signs with the global `--identity` (created on first use). Its window starts now on
//! this machine's clock (no backdating: a verifier allows `DEFAULT_SKEW_S` of clock difference
//! at both ends) or at the parent's start when that is later, and lasts `--ttl`. With
//! `--parent` the new link is minted by the library's checked delegation, after the parent
//! chain's signatures and links are checked here.
//!
//! `inspect` decodes strictly, prints every field of every link, whether each signature
//! verifies and whether each link narrows its parent, and fails with the integrity class
//! (exit 3) after printing when one does not. It says whether the chain is valid now, and
//! why not (a bad link; a link expired, or not valid yet, on this machine's clock: exit 0).
//! Nothing here stores anything.
//!
//! Error classes (the network crate carries none, so they are given here): text that is not a
//! token chain and impossible requests are usage (2); a delegation the parent does not allow,
//! or a parent that is not this identity's, is refused (4); a parent chain or inspected chain
//! whose signature or link does not hold is integrity (3).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use net_mesh_engine::ErrorClass;
use net_mesh_rpc::token::{
    DelegationFault, MAX_DELEGATION_DEPTH, MintError, ParseTokenError, TOKEN_LEN, VerifyContext,
    VerifyError, chain_from_text, chain_to_text, fresh_nonce, verify,
};
use net_mesh_rpc::{PermissionToken, Scope, TokenChannel, TokenClaims};
use serde_json::{Value, json};

use crate::Ctx;
use crate::outln;
use crate::output::{CliError, CliResult, ErrorContext};

/// Token subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Mint a permission token signed by --identity and print its text (a chain with --parent)
    Mint(MintArgs),
    /// Print every field of every link of a token or chain and whether each verifies (exit 3
    /// if a signature is bad or a link does not narrow its parent)
    Inspect(InspectArgs),
    /// Refuse an issuer's tokens below a generation from now on (admin; on --node, or on the
    /// local data dir for the next `serve`)
    Revoke(crate::token_revoke::RevokeArgs),
}

/// `token mint` options.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// The subject's ed25519 public key, 64 hex digits (the `public_key` line of `identity
    /// show`): the node the token is for. A node id cannot name it (it is a hash of the key)
    #[arg(long, value_name = "PUBLIC_KEY")]
    subject: String,
    /// Rights, comma-separated: read, write, admin, delegate
    #[arg(long, value_name = "RIGHTS", value_parser = parse_scope)]
    scope: Scope,
    /// The channel name the rights are on, or '*' for every channel
    #[arg(long, value_name = "NAME|*")]
    channel: String,
    /// How long the token is valid from now: whole seconds, e.g. 90s, 30m, 1h, 7d
    #[arg(long, value_name = "DURATION", value_parser = crate::gc::parse_duration)]
    ttl: Duration,
    /// How many further delegations may follow (each strictly lower); above 0 needs the
    /// delegate right
    #[arg(long, value_name = "D", default_value_t = 0)]
    delegate_depth: u8,
    /// The issuer's generation: a node refuses an issuer's tokens below its revocation floor,
    /// so mint at or above the floor after a revoke
    #[arg(long, value_name = "N", default_value_t = 0)]
    issuer_generation: u32,
    /// Delegate: the token (or chain) this identity holds; prints that chain followed by the
    /// new link, which must narrow it
    #[arg(long, value_name = "TOKEN")]
    parent: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// `token inspect` options.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The token or chain text (`nmt1…`)
    #[arg(required_unless_present = "token_file", conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the token text from FILE (surrounding whitespace ignored)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// Runs a token subcommand (`mint` and `inspect` are local: nothing is sent anywhere).
pub fn run(cmd: TokenCmd, ctx: &Ctx) -> CliResult {
    match cmd {
        TokenCmd::Mint(args) => {
            ctx.local_only("token mint")?;
            mint(args, ctx)
        }
        TokenCmd::Inspect(args) => {
            ctx.local_only("token inspect")?;
            inspect(args)
        }
        TokenCmd::Revoke(args) => crate::token_revoke::run(args, ctx),
    }
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    text.parse::<Scope>().map_err(|e| e.to_string())
}

fn mint(args: MintArgs, ctx: &Ctx) -> CliResult {
    let subject = parse_public_key(&args.subject)?;
    if subject == [0; 32] {
        return Err(usage(
            "--subject is the all-zero key, which is no node's public key",
        ));
    }
    let channel = match args.channel.as_str() {
        "*" => TokenChannel::Any,
        "" => return Err(usage("--channel is empty: give a channel name or '*'")),
        // The names `channel create` takes: a token for any other name grants nothing.
        name => {
            net_mesh_engine::index::check_channel_name(name)
                .map_err(|e| usage(format!("--channel: {e}")))?;
            TokenChannel::named(name)
        }
    };
    if args.ttl.subsec_nanos() != 0 || args.ttl.is_zero() {
        return Err(usage(format!(
            "--ttl must be a positive whole number of seconds, got {:?}",
            args.ttl
        )));
    }
    if args.delegate_depth > MAX_DELEGATION_DEPTH {
        return Err(mint_error(MintError::DelegationDepthTooLarge {
            depth: args.delegate_depth,
        }));
    }
    if args.delegate_depth > 0 && !args.scope.contains(Scope::DELEGATE) {
        return Err(usage(format!(
            "--delegate-depth {} needs the delegate right in --scope",
            args.delegate_depth
        )));
    }
    let parent = match &args.parent {
        None => None,
        Some(text) => {
            let chain = parse_chain(text).context_classified("reading --parent")?;
            check_holds(&chain).context_classified("checking --parent")?;
            Some(chain)
        }
    };
    let identity = crate::identity::load_or_create(&ctx.dir, &ctx.identity)?;
    let now = unix_now()?;
    let parent_link = parent.as_ref().and_then(|chain| chain.last());
    if let Some(link) = parent_link {
        let window_end = link.claims().not_after;
        if now > window_end {
            return Err(CliError::msg(
                ErrorClass::Refused,
                format!(
                    "the parent token expired at {window_end} ({}); nothing was minted",
                    rfc3339_or_out_of_range(window_end)
                ),
            ));
        }
    }
    let not_before = parent_link.map_or(now, |link| now.max(link.claims().not_before));
    let not_after = not_before
        .checked_add(args.ttl.as_secs())
        .ok_or_else(|| usage(format!("--ttl {:?} is too long", args.ttl)))?;
    let claims = TokenClaims {
        subject,
        scope: args.scope,
        channel,
        issuer_generation: args.issuer_generation,
        not_before,
        not_after,
        delegation_depth: args.delegate_depth,
        nonce: fresh_nonce().map_err(mint_error)?,
    };
    let token = match parent_link {
        None => PermissionToken::mint(&identity, claims),
        Some(link) => link.delegate(&identity, claims),
    }
    .map_err(|e| mint_error(e).context("nothing was minted"))?;
    let mut chain = parent.unwrap_or_default();
    chain.push(token.clone());
    let text = chain_to_text(&chain);
    if args.json {
        let claims = token.claims();
        let out = json!({
            "token": text,
            "issuer": token.issuer_node_id().to_hex(),
            "issuer_public_key": hex(token.issuer()),
            "subject": token.subject_node_id().to_hex(),
            "subject_public_key": hex(&claims.subject),
            "scope": scope_names(claims.scope),
            "channel": channel_text(claims.channel),
            "channel_name": match claims.channel {
                TokenChannel::Any => Value::Null,
                TokenChannel::Named(_) => Value::from(args.channel.as_str()),
            },
            "issuer_generation": claims.issuer_generation,
            "not_before": claims.not_before,
            "not_after": claims.not_after,
            "delegation_depth": claims.delegation_depth,
            "nonce": format!("{:016x}", claims.nonce),
            "links": chain.len(),
            "size": chain.len().saturating_mul(TOKEN_LEN),
        });
        outln!("{out}");
    } else {
        outln!("{text}");
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> CliResult {
    let text = match (&args.token, &args.token_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_class(ErrorClass::Io, || format!("reading {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => return Err(usage("give a TOKEN or --token-file FILE")),
    };
    let chain = parse_chain(&text)?;
    let reports = link_reports(&chain);
    let failure = first_failure(&reports);
    // Valid: every link holds and the chain is within its window on this machine's clock.
    let invalid = match &failure {
        Some(e) => Some(e.one_line()),
        None => expiry(&chain, unix_now()?),
    };
    if args.json {
        let links: Vec<Value> = reports.iter().map(LinkReport::json).collect();
        let out = json!({
            "links": links,
            "size": chain.len().saturating_mul(TOKEN_LEN),
            "valid": invalid.is_none(),
            "invalid_reason": invalid,
        });
        outln!("{out}");
    } else {
        outln!("links: {}", chain.len());
        outln!("size: {}", chain.len().saturating_mul(TOKEN_LEN));
        for report in &reports {
            report.print()?;
        }
        match &invalid {
            None => outln!("valid: yes"),
            Some(why) => outln!("valid: no ({why})"),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Why `chain` is out of its validity window at `now` (unix seconds), if it is: the first link
/// that expired (a chain is valid only while every link is), or that is not valid yet.
fn expiry(chain: &[PermissionToken], now: u64) -> Option<String> {
    chain.iter().enumerate().find_map(|(index, token)| {
        let claims = token.claims();
        if now > claims.not_after {
            Some(format!(
                "link {index} expired at {} ({})",
                claims.not_after,
                rfc3339_or_out_of_range(claims.not_after)
            ))
        } else if now < claims.not_before {
            Some(format!(
                "link {index} is not valid before {} ({})",
                claims.not_before,
                rfc3339_or_out_of_range(claims.not_before)
            ))
        } else {
            None
        }
    })
}

/// A chain text, parsed strictly; any fault is a usage error with the library's message.
fn parse_chain(text: &str) -> CliResult<Vec<PermissionToken>> {
    chain_from_text(text).map_err(parse_error)
}

fn parse_error(e: ParseTokenError) -> CliError {
    CliError::new(ErrorClass::Usage, e).context("not a permission token")
}

fn mint_error(e: MintError) -> CliError {
    let class = match &e {
        MintError::InvertedValidity { .. } | MintError::DelegationDepthTooLarge { .. } => {
            ErrorClass::Usage
        }
        MintError::NotTheSubject | MintError::Delegation(_) => ErrorClass::Refused,
        MintError::Rng(_) => ErrorClass::Io,
    };
    CliError::new(class, e)
}

fn usage(message: impl std::fmt::Display) -> CliError {
    CliError::msg(ErrorClass::Usage, message.to_string())
}

/// Fails with the integrity class unless every link's signature verifies and every link
/// narrows its parent.
fn check_holds(chain: &[PermissionToken]) -> CliResult {
    first_failure(&link_reports(chain)).map_or(Ok(()), Err)
}

/// What `inspect` found about one link.
#[derive(Debug)]
struct LinkReport<'a> {
    index: usize,
    token: &'a PermissionToken,
    signature_ok: bool,
    /// `None` for the root; otherwise why the link does not follow its parent, if it does not.
    narrows: Option<Result<(), String>>,
}

fn link_reports(chain: &[PermissionToken]) -> Vec<LinkReport<'_>> {
    let mut reports = Vec::with_capacity(chain.len());
    let mut parent: Option<&PermissionToken> = None;
    for (index, token) in chain.iter().enumerate() {
        reports.push(LinkReport {
            index,
            token,
            signature_ok: token.verify_signature().is_ok(),
            narrows: parent.map(|parent| link_fault(parent, token).map_or(Ok(()), Err)),
        });
        parent = Some(token);
    }
    reports
}

/// The first bad signature, else the first link that does not follow its parent.
fn first_failure(reports: &[LinkReport<'_>]) -> Option<CliError> {
    if let Some(bad) = reports.iter().find(|r| !r.signature_ok) {
        return Some(CliError::msg(
            ErrorClass::Integrity,
            format!(
                "link {}: the token's signature does not verify against its issuer key",
                bad.index
            ),
        ));
    }
    reports.iter().find_map(|r| match &r.narrows {
        Some(Err(fault)) => Some(CliError::msg(
            ErrorClass::Integrity,
            format!("link {} does not follow its parent: {fault}", r.index),
        )),
        _ => None,
    })
}

/// Why `child` may not follow `parent` in a chain, or `None` if it may. These are the
/// library's own link checks, run by verifying the pair as a chain whose root issuer is
/// trusted: `verify` checks the links before the last link against the call and before the
/// signatures (FORMAT.md §5.5), so any other outcome means the link holds.
fn link_fault(parent: &PermissionToken, child: &PermissionToken) -> Option<String> {
    let trusted = HashSet::from([parent.issuer_node_id()]);
    let floors = HashMap::new();
    let claims = child.claims();
    let ctx = VerifyContext::new(
        &trusted,
        &floors,
        claims.subject,
        "",
        Scope::NONE,
        claims.not_before,
    );
    let pair = [parent.clone(), child.clone()];
    let fault = match verify(&pair, &ctx) {
        Err(VerifyError::BrokenChainLink { .. }) => {
            return Some(format!(
                "issued by {}, not by the parent's subject {}",
                child.issuer_node_id(),
                parent.subject_node_id()
            ));
        }
        Err(VerifyError::DelegationNotPermitted { .. }) => DelegationFault::NotPermitted,
        Err(VerifyError::OverDeepDelegation {
            parent_depth,
            depth,
            ..
        }) => DelegationFault::OverDeep {
            parent_depth,
            depth,
        },
        Err(VerifyError::WideningDelegation { widened, .. }) => DelegationFault::Widened(widened),
        _ => return None,
    };
    Some(fault.to_string())
}

impl LinkReport<'_> {
    fn json(&self) -> Value {
        let token = self.token;
        let claims = token.claims();
        json!({
            "link": self.index,
            "issuer": token.issuer_node_id().to_hex(),
            "issuer_public_key": hex(token.issuer()),
            "subject": token.subject_node_id().to_hex(),
            "subject_public_key": hex(&claims.subject),
            "scope": scope_names(claims.scope),
            "channel": channel_text(claims.channel),
            "issuer_generation": claims.issuer_generation,
            "not_before": claims.not_before,
            "not_before_rfc3339": rfc3339(claims.not_before),
            "not_after": claims.not_after,
            "not_after_rfc3339": rfc3339(claims.not_after),
            "delegation_depth": claims.delegation_depth,
            "nonce": format!("{:016x}", claims.nonce),
            "size": TOKEN_LEN,
            "signature": if self.signature_ok { "ok" } else { "bad" },
            "narrows_parent": self.narrows.as_ref().map(|n| n.is_ok()),
            "link_fault": self.narrows.as_ref().and_then(|n| n.as_ref().err()),
        })
    }

    fn print(&self) -> CliResult {
        let token = self.token;
        let claims = token.claims();
        outln!("link {}:", self.index);
        outln!("  issuer: {}", token.issuer_node_id());
        outln!("  issuer_public_key: {}", hex(token.issuer()));
        outln!("  subject: {}", token.subject_node_id());
        outln!("  subject_public_key: {}", hex(&claims.subject));
        outln!("  scope: {}", claims.scope);
        outln!("  channel: {}", channel_text(claims.channel));
        outln!("  issuer_generation: {}", claims.issuer_generation);
        outln!(
            "  not_before: {} {}",
            claims.not_before,
            rfc3339_or_out_of_range(claims.not_before)
        );
        outln!(
            "  not_after: {} {}",
            claims.not_after,
            rfc3339_or_out_of_range(claims.not_after)
        );
        outln!("  delegation_depth: {}", claims.delegation_depth);
        outln!("  nonce: {:016x}", claims.nonce);
        outln!("  size: {TOKEN_LEN}");
        outln!(
            "  signature: {}",
            if self.signature_ok { "ok" } else { "bad" }
        );
        match &self.narrows {
            None => {}
            Some(Ok(())) => outln!("  narrows_parent: yes"),
            Some(Err(fault)) => outln!("  narrows_parent: no ({fault})"),
        }
        Ok(())
    }
}

/// The channel hash in hex (the u64, as `ChannelHash` prints it), or `*` for every channel.
fn channel_text(channel: TokenChannel) -> String {
    match channel {
        TokenChannel::Any => "*".to_string(),
        TokenChannel::Named(hash) => hash.to_string(),
    }
}

fn scope_names(scope: Scope) -> Vec<String> {
    if scope.is_empty() {
        return Vec::new();
    }
    scope.to_string().split(',').map(str::to_string).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits (either case) as 32 key bytes.
fn parse_public_key(text: &str) -> CliResult<[u8; 32]> {
    let bad = || {
        usage(format!(
            "--subject {text:?} is not an ed25519 public key (64 hex digits, the public_key \
             line of `identity show`)"
        ))
    };
    if text.len() != 64 {
        return Err(bad());
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(key)
}

fn unix_now() -> CliResult<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .with_class(ErrorClass::Io, || "reading the clock (before 1970)")
}

/// `unix_s` as RFC 3339 UTC (`2027-01-15T08:00:00Z`), or `None` past year 9999.
fn rfc3339(unix_s: u64) -> Option<String> {
    let (days, secs) = (unix_s / 86_400, unix_s % 86_400);
    let (year, month, day) = civil_from_days(days);
    (year <= 9999).then(|| {
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    })
}

fn rfc3339_or_out_of_range(unix_s: u64) -> String {
    rfc3339(unix_s).unwrap_or_else(|| "(after year 9999)".to_string())
}

/// The proleptic Gregorian date `days` after 1970-01-01: days are counted in 400-year eras
/// (146097 days each) of years that start on March 1, so the leap day ends a year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use net_mesh_rpc::Identity;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000).unwrap(), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(4_107_542_399).unwrap(), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400).unwrap(), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), None);
        assert_eq!(rfc3339(u64::MAX), None);
    }

    fn claims(subject: &Identity, scope: Scope, depth: u8, nonce: u64) -> TokenClaims {
        TokenClaims {
            subject: subject.public_key().to_bytes(),
            scope,
            channel: TokenChannel::named("default"),
            issuer_generation: 0,
            not_before: 1_800_000_000,
            not_after: 1_800_003_600,
            delegation_depth: depth,
            nonce,
        }
    }

    #[test]
    fn a_link_that_widens_is_a_fault_even_when_its_signature_is_bad() {
        let root = Identity::from_seed([0x42; 32]);
        let alice = Identity::from_seed([0x43; 32]);
        let bob = Identity::from_seed([0x44; 32]);
        let parent =
            PermissionToken::mint(&root, claims(&alice, Scope::READ | Scope::DELEGATE, 1, 1))
                .unwrap();
        // Minted without the delegation check: widens the scope.
        let widening =
            PermissionToken::mint(&alice, claims(&bob, Scope::READ | Scope::WRITE, 0, 2)).unwrap();
        let fault = link_fault(&parent, &widening).unwrap();
        assert!(fault.contains("widens the parent's scope"), "{fault}");
        let mut bytes = widening.encode();
        bytes[TOKEN_LEN - 1] ^= 1;
        let forged = PermissionToken::decode(&bytes).unwrap();
        assert!(forged.verify_signature().is_err());
        assert!(link_fault(&parent, &forged).is_some());
        let over_deep = PermissionToken::mint(&alice, claims(&bob, Scope::READ, 1, 3)).unwrap();
        assert!(link_fault(&parent, &over_deep).unwrap().contains("depth 1"));
        let stranger = PermissionToken::mint(&bob, claims(&bob, Scope::READ, 0, 4)).unwrap();
        assert!(
            link_fault(&parent, &stranger)
                .unwrap()
                .contains("not by the parent")
        );
        let narrowing = parent
            .delegate(&alice, claims(&bob, Scope::READ, 0, 5))
            .unwrap();
        assert_eq!(link_fault(&parent, &narrowing), None);
        let reports = link_reports(std::slice::from_ref(&parent));
        assert!(reports[0].signature_ok && reports[0].narrows.is_none());
        assert!(first_failure(&reports).is_none());
    }
}
