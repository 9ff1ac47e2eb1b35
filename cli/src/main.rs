//! `nfkv`: command-line client for the nfkv kernel module, over the `nfkv`
//! library (which does everything but argument parsing and output).
//!
//! Exit codes: 0 success, 1 error, 2 usage, 3 key not found, 4 condition
//! failed (exists / version mismatch), 5 module not loaded, 6 permission denied.

use clap::{Args, CommandFactory, Parser, Subcommand};
use nfkv::{batchfile, Restore, RestoreError, SNAPSHOT_RETRIES};
use nfkv::{classifier as cls, Action, Classifier, Counters, Hook, Target};
use nfkv::{decode_escaped, decode_text, encode_text, Condition, Encoding, Error, Nfkv, Ttl};
use nfkv::{format_duration, parse_duration};
use nfkv::{ChangeKind, WatchOptions, Watched};
use nfkv::{GET_COMMAND_NAMES, MAX_BATCH_OPS, MAX_REQUEST_LEN, SET_COMMAND_NAMES};
use serde_json::{json, Value as Json};
use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The man page's and `--help`'s closing sections.
const LONG_HELP: &str = "\
KEYS AND VALUES
  Keys are 1-255 bytes, values 0-max_value_len bytes, both binary. With --hex or --base64 every key, value and prefix, in arguments and output, is lowercase hexadecimal or padded base64. In the default text encoding, output prints printable ASCII as is, a backslash as \\\\, a leading '-' as \\x2d and every other byte as \\xNN, so one key or value is one blank-free token. Arguments (KEY, VALUE, --prefix) take the same escapes: \\xNN is the byte NN, \\\\ a backslash, any other byte stands for itself; a backslash starting anything else is an error. So whatever list prints can be typed back: nfkv del 'a\\x20b' removes the key \"a b\". A value read with --file or from standard input is taken as is. get prints a value's raw bytes (text encoding) or its encoded form.

CLASSIFIERS
  A classifier puts the table in the packet path. Attached to a netfilter hook, it builds a key for each packet: its --prefix, then the packet's source or destination address (4 or 16 bytes; with --ipv4-bits/--ipv6-bits only its first bits, the rest zero, so that one element covers a subnet) or its transport protocol and destination port (tcp, udp, udplite, sctp, dccp). The entry under that key says what to do: drop, accept, or mark MARK[/MASK] (the packet's mark becomes (mark & ~MASK) ^ MARK, and the next classifier runs). A packet without an entry passes. A hook's classifiers run by ascending --priority, then by name. Elements are entries of the table: `nfkv element add blocklist 192.0.2.7 drop` puts the action under the key made of the prefix and 192.0.2.7, and any write of a value that is no action under a classifier's prefix fails. Targets: 192.0.2.7, 2001:db8::1, 10.1.2.0/24 (the length must be the classifier's bits), tcp/80, udp/53, 6/80. The layout in full: docs/ABI.md of nfkv, section \"Classifiers\".

EXPIRY (TTL)
  put --ttl DURATION makes an entry that expires DURATION after the write: from then on it is absent to every command and to the classifiers, and the module frees it within a second or so (until then nfkv info still counts it). DURATION is 500ms, 30s, 5m, 2h, 1d, or units combined largest first (1h30m, 1m30.5s); a bare number is seconds (30 = 30s, as ipset's timeout); from 1ms to 49d17h2m47.295s. A put without --ttl makes an entry that never expires, also where it replaces one that would have; put --keep-ttl keeps the replaced entry's expiry (or its lack of one), --ttl then applying only where the key is absent. get --ttl and list show the time left (expires 29.5s); --json gives ttl_ms (null: never). save records each entry's time left and the time of the save; restore gives each entry that time less the time since, and leaves out (and counts) those that expired in between.

WATCHING CHANGES
  watch prints each change of the table as it happens, one line each: GENERATION LAST TYPE KEY, TYPE being put, delete, expire (the module removed an expired entry, within a second or so of its end) or flush (no KEY). GENERATION is the table's generation the change made (a put's is the entry's version); the changes of one write (a batch) share LAST, the generation of its last change. With --values a put's line ends with its value, or - where the entry no longer held it (a later change replaced it). --json prints one object per line: generation, last, type, key, value (with --values, when attached). --since G starts after generation G (default: now); --count N exits after N changes, --timeout DURATION when none came for that long. When the module's change log (watch_log_kib) no longer holds the changes watch needs, it says so on standard error, prints G G resync ({\"type\":\"resync\",\"generation\":G}) and the entries of a snapshot of the table at generation G as puts sharing LAST G, then goes on from G.

BATCH AND SAVE FILES
  batch, save and restore share one file format: one record per line (put, del, or a first flush), keys and values as single tokens in the encoding above. batch applies a file all or nothing; restore too when it fits one request, else in several. The format in full, and which restores are atomic: README.md of nfkv, section \"Batch and save files\".";

#[derive(Parser)]
#[command(
    name = "nfkv",
    about = "Store and read key/value entries in the nfkv kernel module"
)]
#[command(
    after_help = "Exit status: 0 success, 1 error, 2 usage, 3 key not found, 4 condition failed (exists or version mismatch), 5 nfkv.ko not loaded, 6 permission denied.",
    after_long_help = LONG_HELP
)]
#[command(disable_version_flag = true)]
struct Cli {
    /// Print client, ABI and module versions
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Keys and values are hexadecimal (input and output)
    #[arg(long, global = true, conflicts_with = "base64")]
    hex: bool,
    /// Keys and values are base64 (input and output)
    #[arg(long, global = true)]
    base64: bool,
    /// JSON output for read commands
    #[arg(long, short = 'j', global = true)]
    json: bool,
    /// First optname of the module (default: $NFKV_OPTBASE, sysfs, 2048)
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(..=i64::from(nfkv::MAX_OPTBASE)))]
    optbase: Option<u32>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show the module's limits and this namespace's usage
    Info,
    /// Store a value (from VALUE, --file, or standard input)
    Put(PutArgs),
    /// Print the value of KEY
    Get {
        key: OsString,
        /// Also print the version (text output)
        #[arg(long)]
        version: bool,
        /// Also print the time left, "expires 29.5s" or "expires never" (text output)
        #[arg(long)]
        ttl: bool,
    },
    /// Remove KEY
    #[command(alias = "delete")]
    Del {
        key: OsString,
        /// Only if the entry has this version
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Remove every entry
    Flush,
    /// List entries in key order ("KEY VALUE", then "expires 29.5s" if it expires)
    List {
        /// Only keys starting with this
        #[arg(long, short = 'p')]
        prefix: Option<OsString>,
        /// One consistent snapshot (restart while the table changes)
        #[arg(long)]
        consistent: bool,
        /// Print keys only
        #[arg(long)]
        keys: bool,
    },
    /// Show per-command counters
    Stats,
    /// Print the table's changes as they happen, one line each (see WATCHING CHANGES)
    Watch(WatchArgs),
    /// Apply a batch file (FILE or stdin) all or nothing (see BATCH AND SAVE FILES)
    Batch { file: Option<PathBuf> },
    /// Print every entry as a batch file that `restore` reads back exactly
    Save {
        /// Only keys starting with this
        #[arg(long, short = 'p')]
        prefix: Option<OsString>,
    },
    /// Apply a `save` file: atomically when it fits one batch (see BATCH AND SAVE FILES)
    Restore {
        file: Option<PathBuf>,
        /// Empty the table first (only the saved prefix, for a `save --prefix`)
        #[arg(long)]
        flush: bool,
    },
    /// Attach table lookups to netfilter hooks (see CLASSIFIERS)
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Write, delete and list the entries of a classifier (see CLASSIFIERS)
    #[command(subcommand)]
    Element(ElementCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff)
    #[command(hide = true)]
    Manpage,
}

#[derive(Subcommand)]
enum ClassifierCommand {
    /// Add a classifier to this namespace
    Add(ClassifierArgs),
    /// Remove a classifier (its entries stay in the table)
    #[command(alias = "del")]
    Delete {
        /// The classifier
        name: String,
    },
    /// List the classifiers in the order packets see them, with their counters
    List,
}

#[derive(Args)]
struct ClassifierArgs {
    /// 1-15 characters of A-Z a-z 0-9 _ . -
    name: String,
    /// prerouting, input, forward, output or postrouting
    #[arg(long, value_parser = parse_hook)]
    hook: Hook,
    /// inet (IPv4 and IPv6), ip or ip6
    #[arg(long, default_value = "inet", value_parser = parse_family)]
    family: nfkv::Family,
    /// saddr, daddr or dport (transport protocol and destination port)
    #[arg(long = "match", value_name = "MATCH", value_parser = parse_match)]
    matches: nfkv::Match,
    /// The keys' prefix, 1-64 bytes (in the key encoding)
    #[arg(long, short = 'p')]
    prefix: OsString,
    /// Lower runs first; ties by name
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Key IPv4 addresses by their first N bits (a subnet per element; 0: all)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=32))]
    ipv4_bits: u8,
    /// Key IPv6 addresses by their first N bits (0: all)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=128))]
    ipv6_bits: u8,
}

#[derive(Subcommand)]
enum ElementCommand {
    /// Put ACTION for TARGET under classifier NAME (replacing its action)
    Add {
        /// The classifier
        name: String,
        /// 192.0.2.7, 2001:db8::1, 10.1.2.0/24, tcp/80, udp/53, ...
        target: String,
        /// drop, accept, or mark MARK[/MASK]
        #[arg(required = true, num_args = 1..)]
        action: Vec<String>,
        /// The element expires DURATION after the write (as put --ttl)
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl, allow_hyphen_values = true)]
        ttl: Option<u32>,
        /// Where the element exists, keep its expiry (as put --keep-ttl)
        #[arg(long)]
        keep_ttl: bool,
    },
    /// Remove TARGET's entry under classifier NAME
    #[command(alias = "del")]
    Delete {
        /// The classifier
        name: String,
        /// As for add
        target: String,
    },
    /// List the entries of classifier NAME
    List {
        /// The classifier
        name: String,
    },
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    s.parse().map_err(|e| invalid_message(&e))
}

fn parse_family(s: &str) -> Result<nfkv::Family, String> {
    cls::parse_family(s).map_err(|e| invalid_message(&e))
}

fn parse_match(s: &str) -> Result<nfkv::Match, String> {
    cls::parse_match(s).map_err(|e| invalid_message(&e))
}

/// The message of an argument the library refused, without "invalid request: ".
fn invalid_message(e: &Error) -> String {
    match e {
        Error::Invalid(m) => m.clone(),
        e => e.to_string(),
    }
}

#[derive(Args)]
struct WatchArgs {
    /// Only changes to keys starting with this (flushes always show)
    #[arg(long, short = 'p')]
    prefix: Option<OsString>,
    /// Also print each put's value (where the entry still holds it; else -)
    #[arg(long)]
    values: bool,
    /// Print the changes after this generation (default: the table's current one)
    #[arg(long, value_name = "GENERATION")]
    since: Option<u64>,
    /// Exit after N changes
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit when no change came for DURATION (500ms, 30s, 5m, ...)
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

/// A `--timeout` argument: any duration `parse_duration` takes.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Args)]
struct PutArgs {
    key: OsString,
    value: Option<OsString>,
    /// Read the value from this file ("-": standard input)
    #[arg(long, short = 'f', conflicts_with = "value")]
    file: Option<PathBuf>,
    /// Fail if the key exists
    #[arg(long, conflicts_with_all = ["replace", "if_version"])]
    create: bool,
    /// Fail if the key is absent
    #[arg(long)]
    replace: bool,
    /// Fail unless the entry has this version
    #[arg(long)]
    if_version: Option<u64>,
    /// Expire DURATION after the write: 500ms, 30s, 5m, 2h, 1d, 1h30m; a bare number is seconds
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, allow_hyphen_values = true)]
    ttl: Option<u32>,
    /// Where the key is present, keep its entry's expiry (or lack of one)
    #[arg(long)]
    keep_ttl: bool,
}

/// A `--ttl` argument: a duration of 1 ms..=49.7 days, in whole ms (rounded up).
fn parse_ttl(s: &str) -> Result<u32, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    nfkv::duration::ttl_ms(d).map_err(|e| invalid_message(&e))
}

/// The time left of an entry as text and in `--json` output.
fn expires_text(ttl: Option<Duration>) -> String {
    ttl.map_or_else(|| "never".into(), format_duration)
}

fn ttl_json(ttl: Option<Duration>) -> Json {
    json!(ttl.map(|d| d.as_millis() as u64))
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

/// The exit code of a failure with error `e`.
fn exit_code(e: &Error) -> u8 {
    match e {
        Error::NotFound => 3,
        Error::Exists | Error::VersionMismatch => 4,
        Error::NotLoaded { .. } => 5,
        Error::PermissionDenied => 6,
        _ => 1,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: exit_code(&e),
            message: e.to_string(),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

struct Ctx {
    enc: Encoding,
    /// The encoding was asked for (--hex, --base64).
    explicit: bool,
    json: bool,
    optbase: Option<u32>,
}

impl Ctx {
    fn open(&self) -> Result<Nfkv, Failure> {
        Ok(match self.optbase {
            Some(base) => Nfkv::open_at(base)?,
            None => Nfkv::open()?,
        })
    }

    /// A key or value given on the command line: in text mode its bytes,
    /// with the escapes text output uses (`\xNN`, `\\`) resolved.
    fn arg_bytes(&self, what: &str, arg: OsString) -> Result<Vec<u8>, Failure> {
        match self.enc {
            Encoding::Text => {
                decode_escaped(&arg.into_vec()).map_err(|e| usage(format!("{what}: {e}")))
            }
            enc => {
                let s = arg
                    .into_string()
                    .map_err(|_| usage(format!("{what} is not valid {}", enc.name())))?;
                decode_text(&s, enc).map_err(|e| usage(format!("{what}: {e}")))
            }
        }
    }

    fn text(&self, bytes: &[u8]) -> String {
        encode_text(bytes, self.enc)
    }
}

fn main() -> ExitCode {
    // Die quietly on SIGPIPE like other Unix tools (`nfkv list | head`).
    // SAFETY: resetting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("nfkv: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Ctx {
        enc: if cli.hex {
            Encoding::Hex
        } else if cli.base64 {
            Encoding::Base64
        } else {
            Encoding::Text
        },
        explicit: cli.hex || cli.base64,
        json: cli.json,
        optbase: cli.optbase,
    };
    let mut out = io::stdout().lock();
    if cli.version {
        return version(&ctx, &mut out);
    }
    let Some(command) = cli.command else {
        return Err(usage("no command given; see nfkv --help"));
    };
    match command {
        Command::Info => info(&ctx, &mut out),
        Command::Put(args) => put(&ctx, args),
        Command::Get { key, version, ttl } => get(&ctx, &mut out, key, version, ttl),
        Command::Del { key, if_version } => {
            let key = ctx.arg_bytes("KEY", key)?;
            Ok(ctx.open()?.delete(&key, if_version)?)
        }
        Command::Flush => Ok(ctx.open()?.flush()?),
        Command::List {
            prefix,
            consistent,
            keys,
        } => list(&ctx, &mut out, prefix, consistent, keys),
        Command::Stats => stats(&ctx, &mut out),
        Command::Watch(args) => watch(&ctx, &mut out, args),
        Command::Batch { file } => {
            let mut file = read_file(&ctx, file.as_deref())?;
            report_expired(file.expire(SystemTime::now()));
            let batch = file.to_batch(false);
            let kv = ctx.open()?;
            if batch.len() > MAX_BATCH_OPS || batch.encoded_len() > MAX_REQUEST_LEN {
                return Err(Failure {
                    code: 1,
                    message: format!(
                        "too large: {} records, {} bytes do not fit one atomic batch (at most {MAX_BATCH_OPS} records and {MAX_REQUEST_LEN} bytes); nothing was applied",
                        batch.len(),
                        batch.encoded_len()
                    ),
                });
            }
            Ok(kv.apply(&batch)?)
        }
        Command::Save { prefix } => save(&ctx, &mut out, prefix),
        Command::Restore { file, flush } => restore(&ctx, file.as_deref(), flush),
        Command::Classifier(c) => classifier(&ctx, &mut out, c),
        Command::Element(e) => element(&ctx, &mut out, e),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "nfkv", &mut out);
            Ok(())
        }
        Command::Manpage => Ok(clap_mangen::Man::new(Cli::command()).render(&mut out)?),
    }
}

fn version(ctx: &Ctx, out: &mut impl Write) -> Result<(), Failure> {
    let client = env!("CARGO_PKG_VERSION");
    let module = ctx.open().and_then(|kv| Ok(kv.info()?));
    if ctx.json {
        let module = module
            .as_ref()
            .ok()
            .map(|i| json!({"version": i.module_version_str(), "abi_version": i.abi_version}));
        let v = json!({"client": client, "abi_version": nfkv::ABI_VERSION, "module": module});
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "nfkv {client} (ABI {})", nfkv::ABI_VERSION)?;
        match module {
            Ok(i) => writeln!(
                out,
                "module {} (ABI {})",
                i.module_version_str(),
                i.abi_version
            )?,
            Err(f) => writeln!(out, "module: {}", f.message)?,
        }
    }
    Ok(())
}

fn info(ctx: &Ctx, out: &mut impl Write) -> Result<(), Failure> {
    let i = ctx.open()?.info()?;
    if ctx.json {
        let v = json!({
            "abi_version": i.abi_version,
            "module_version": i.module_version_str(),
            "optbase": i.optbase,
            "max_key_len": i.max_key_len,
            "max_value_len": i.max_value_len,
            "max_entries": i.max_entries,
            "max_batch_ops": i.max_batch_ops,
            "entries": i.entries,
            "bytes_used": i.bytes_used,
            "max_bytes": i.max_bytes,
            "generation": i.generation,
            "charged_to_budget": i.charged_to_budget(),
            "charged": i.charged,
            "budget_used": i.budget_used,
            "budget_size": i.budget_size,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "module version: {}", i.module_version_str())?;
        writeln!(out, "abi version:    {}", i.abi_version)?;
        writeln!(
            out,
            "optnames:       {}..{}",
            i.optbase,
            i.optbase.saturating_add(15)
        )?;
        writeln!(out, "entries:        {} of {}", i.entries, i.max_entries)?;
        writeln!(out, "bytes used:     {} of {}", i.bytes_used, i.max_bytes)?;
        // The shared budget of unprivileged namespaces: this table's part in
        // it when it is charged, the whole group's use either way.
        if i.charged_to_budget() {
            writeln!(out, "charged:        {} (to the shared budget)", i.charged)?;
        } else {
            writeln!(out, "charged:        not charged (initial user namespace)")?;
        }
        writeln!(
            out,
            "shared budget:  {} of {} (all unprivileged namespaces)",
            i.budget_used, i.budget_size
        )?;
        writeln!(out, "generation:     {}", i.generation)?;
        writeln!(out, "max key len:    {}", i.max_key_len)?;
        writeln!(out, "max value len:  {}", i.max_value_len)?;
        writeln!(out, "max batch ops:  {}", i.max_batch_ops)?;
    }
    Ok(())
}

fn put(ctx: &Ctx, args: PutArgs) -> Result<(), Failure> {
    let cond = put_condition(&args);
    let key = ctx.arg_bytes("KEY", args.key)?;
    let value = match (args.value, args.file) {
        (Some(v), _) => ctx.arg_bytes("VALUE", v)?,
        (None, Some(path)) if path.as_os_str() != "-" => std::fs::read(&path).map_err(|e| {
            Failure::from(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        })?,
        (None, _) => {
            let mut v = Vec::new();
            io::stdin().read_to_end(&mut v)?;
            v
        }
    };
    Ok(ctx.open()?.put(&key, &value, cond)?)
}

/// What `put`'s flags ask of the write.
fn put_condition(args: &PutArgs) -> Condition {
    Condition {
        create_only: args.create,
        replace_only: args.replace,
        if_version: args.if_version,
        ttl: Ttl {
            ms: args.ttl,
            keep: args.keep_ttl,
        },
    }
}

fn get(
    ctx: &Ctx,
    out: &mut impl Write,
    key: OsString,
    show_version: bool,
    show_ttl: bool,
) -> Result<(), Failure> {
    let key = ctx.arg_bytes("KEY", key)?;
    let v = ctx.open()?.get(&key)?;
    if ctx.json {
        let j = json!({
            "key": ctx.text(&key),
            "value": ctx.text(&v.value),
            "version": v.version,
            "ttl_ms": ttl_json(v.ttl),
            "encoding": ctx.enc.name(),
        });
        writeln!(out, "{j}")?;
    } else {
        if show_version {
            writeln!(out, "version {}", v.version)?;
        }
        if show_ttl {
            writeln!(out, "expires {}", expires_text(v.ttl))?;
        }
        match ctx.enc {
            // Raw bytes, exactly as stored, like cat.
            Encoding::Text => out.write_all(&v.value)?,
            _ => writeln!(out, "{}", ctx.text(&v.value))?,
        }
    }
    out.flush()?;
    Ok(())
}

fn entry_json(ctx: &Ctx, e: &nfkv::Entry) -> Json {
    json!({"key": ctx.text(&e.key), "value": ctx.text(&e.value), "version": e.version, "ttl_ms": ttl_json(e.ttl)})
}

/// A line of `list`: the key, the value, and the time left of an entry
/// that expires (`KEY VALUE expires 29.5s`); with `keys_only`, the key.
fn entry_line(ctx: &Ctx, e: &nfkv::Entry, keys_only: bool) -> String {
    if keys_only {
        return ctx.text(&e.key);
    }
    let mut line = format!("{} {}", ctx.text(&e.key), ctx.text(&e.value));
    if let Some(left) = e.ttl {
        line += &format!(" expires {}", format_duration(left));
    }
    line
}

fn list(
    ctx: &Ctx,
    out: &mut impl Write,
    prefix: Option<OsString>,
    consistent: bool,
    keys_only: bool,
) -> Result<(), Failure> {
    let prefix = prefix
        .map(|p| ctx.arg_bytes("PREFIX", p))
        .transpose()?
        .unwrap_or_default();
    let kv = ctx.open()?;
    let print = |out: &mut dyn Write, e: &nfkv::Entry| -> io::Result<()> {
        writeln!(out, "{}", entry_line(ctx, e, keys_only))
    };
    if consistent || ctx.json {
        let (generation, entries) = kv.snapshot(&prefix, SNAPSHOT_RETRIES)?;
        if ctx.json {
            let list: Vec<Json> = entries.iter().map(|e| entry_json(ctx, e)).collect();
            let j = json!({"generation": generation, "encoding": ctx.enc.name(), "entries": list});
            writeln!(out, "{j}")?;
        } else {
            for e in &entries {
                print(out, e)?;
            }
        }
        return Ok(());
    }
    for e in kv.list(&prefix) {
        print(out, &e?)?;
    }
    Ok(())
}

/// A line of `watch`: `GENERATION LAST TYPE [KEY [VALUE]]`. The key is
/// left out for a flush; with `values`, a put's value follows its key, `-`
/// where the entry no longer held it (no encoded value is `-`: text
/// escapes a leading '-').
fn change_line(ctx: &Ctx, c: &nfkv::Change, values: bool) -> String {
    let mut line = format!("{} {} {}", c.generation, c.last, c.kind.name());
    if c.kind != ChangeKind::Flush {
        line.push(' ');
        line += &ctx.text(&c.key);
    }
    if values && c.kind == ChangeKind::Put {
        line.push(' ');
        match &c.value {
            Some(v) => line += &ctx.text(v),
            None => line.push('-'),
        }
    }
    line
}

/// A JSON line of `watch --json`: `generation`, `last`, `type`, `key` (not
/// for a flush), `value` (a put's, when attached).
fn change_json(ctx: &Ctx, c: &nfkv::Change) -> Json {
    let mut j = json!({"generation": c.generation, "last": c.last, "type": c.kind.name()});
    if c.kind != ChangeKind::Flush {
        j["key"] = json!(ctx.text(&c.key));
    }
    if let Some(v) = &c.value {
        j["value"] = json!(ctx.text(v));
    }
    j
}

/// The resync record: text `G G resync` (the snapshot's puts that follow
/// share `last` G), JSON `{"type":"resync","generation":G}`.
fn resync_line(ctx: &Ctx, generation: u64) -> String {
    if ctx.json {
        json!({"type": "resync", "generation": generation}).to_string()
    } else {
        format!("{generation} {generation} resync")
    }
}

fn watch(ctx: &Ctx, out: &mut impl Write, args: WatchArgs) -> Result<(), Failure> {
    let prefix = args
        .prefix
        .map(|p| ctx.arg_bytes("PREFIX", p))
        .transpose()?
        .unwrap_or_default();
    if args.count == Some(0) {
        return Ok(());
    }
    let kv = ctx.open()?;
    let options = WatchOptions {
        prefix,
        since: args.since,
        values: args.values,
        idle_timeout: args.timeout,
    };
    let mut watcher = kv.watch(options);
    let mut printed = 0u64;
    loop {
        let item = match watcher.next() {
            None => return Ok(()),
            Some(Err(Error::Interrupted)) => continue,
            Some(item) => item?,
        };
        match item {
            Watched::Resync { after, generation } => {
                eprintln!(
                    "nfkv: the change log no longer held the changes after generation {after}: resynchronised from a snapshot of the table at generation {generation} (its entries follow as puts)"
                );
                writeln!(out, "{}", resync_line(ctx, generation))?;
            }
            Watched::Change(c) => {
                if ctx.json {
                    writeln!(out, "{}", change_json(ctx, &c))?;
                } else {
                    writeln!(out, "{}", change_line(ctx, &c, args.values))?;
                }
                printed += 1;
            }
        }
        out.flush()?;
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
    }
}

fn stats(ctx: &Ctx, out: &mut impl Write) -> Result<(), Failure> {
    let s = ctx.open()?.stats()?;
    if ctx.json {
        let side = |names: &[&str], counters: &[nfkv::Counter]| -> Json {
            names
                .iter()
                .zip(counters)
                .map(|(n, c)| (n.to_string(), json!({"ok": c.ok, "failed": c.failed})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let j = json!({"set": side(&SET_COMMAND_NAMES, &s.set), "get": side(&GET_COMMAND_NAMES, &s.get)});
        writeln!(out, "{j}")?;
    } else {
        writeln!(out, "{:<12} {:>12} {:>12}", "command", "ok", "failed")?;
        for (name, c) in SET_COMMAND_NAMES.iter().zip(&s.set) {
            writeln!(
                out,
                "{:<12} {:>12} {:>12}",
                format!("set {name}"),
                c.ok,
                c.failed
            )?;
        }
        for (name, c) in GET_COMMAND_NAMES.iter().zip(&s.get) {
            writeln!(
                out,
                "{:<12} {:>12} {:>12}",
                format!("get {name}"),
                c.ok,
                c.failed
            )?;
        }
    }
    Ok(())
}

fn save(ctx: &Ctx, out: &mut impl Write, prefix: Option<OsString>) -> Result<(), Failure> {
    let prefix = prefix
        .map(|p| ctx.arg_bytes("PREFIX", p))
        .transpose()?
        .unwrap_or_default();
    Ok(batchfile::save(&ctx.open()?, out, ctx.enc, &prefix)?)
}

/// Says on standard error how many puts of a save were left out because
/// their entries expired since the save.
fn report_expired(expired: usize) {
    if expired > 0 {
        let s = if expired == 1 { "y" } else { "ies" };
        eprintln!("nfkv: {expired} entr{s} of the save expired since it was taken: not restored");
    }
}

/// Reads and parses a batch or save file (`-` or none: standard input).
fn read_file(ctx: &Ctx, file: Option<&std::path::Path>) -> Result<batchfile::File, Failure> {
    let (name, reader): (String, Box<dyn BufRead>) = match file {
        Some(p) if p.as_os_str() != "-" => (
            p.display().to_string(),
            Box::new(io::BufReader::new(std::fs::File::open(p).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", p.display()))
            })?)),
        ),
        _ => ("standard input".into(), Box::new(io::stdin().lock())),
    };
    batchfile::read(reader, ctx.explicit.then_some(ctx.enc))
        .map_err(|e| usage(format!("{name}, line {}: {}", e.line, e.message)))
}

/// Restores a file (see [`Restore`]): one atomic batch when it fits, else
/// several in file order, stopping at the first failure with a report of the
/// table's state.
fn restore(ctx: &Ctx, file: Option<&std::path::Path>, flush: bool) -> Result<(), Failure> {
    let file = read_file(ctx, file)?;
    let restore = Restore::new(&file, flush).map_err(|_| {
        usage("restore --flush: this file is in the first save format, which does not record the --prefix it was saved with; restore it without --flush (after `nfkv flush`, if it holds the whole table)")
    })?;
    let done = restore.run(&ctx.open()?, ctx.enc).map_err(Failure::from)?;
    report_expired(done.expired);
    Ok(())
}

/// The failure of a command on classifier `name`: the message names it.
fn cls_failure(e: Error, name: &str) -> Failure {
    Failure {
        code: exit_code(&e),
        message: cls::describe(&e, name),
    }
}

/// A usage error from the library's refusal of an argument.
fn cls_usage(e: Error) -> Failure {
    match e {
        Error::Invalid(m) => usage(m),
        e => Failure::from(e),
    }
}

fn classifier(ctx: &Ctx, out: &mut impl Write, command: ClassifierCommand) -> Result<(), Failure> {
    match command {
        ClassifierCommand::Add(a) => {
            let prefix = ctx.arg_bytes("PREFIX", a.prefix)?;
            let c = cls::new_classifier(&a.name, a.family, a.hook, a.matches, &prefix, a.priority)
                .and_then(|c| cls::with_subnets(c, a.ipv4_bits, a.ipv6_bits))
                .map_err(cls_usage)?;
            ctx.open()?
                .add_classifier(&c)
                .map_err(|e| cls_failure(e, &a.name))
        }
        ClassifierCommand::Delete { name } => ctx
            .open()?
            .delete_classifier(&name)
            .map_err(|e| cls_failure(e, &name)),
        ClassifierCommand::List => {
            let all = ctx.open()?.classifiers()?;
            if ctx.json {
                let list: Vec<Json> = all
                    .iter()
                    .map(|(c, n)| classifier_json(ctx, c, n))
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({"encoding": ctx.enc.name(), "classifiers": list})
                )?;
            } else {
                for (c, n) in &all {
                    writeln!(out, "{}", classifier_line(ctx, c, n))?;
                }
            }
            Ok(())
        }
    }
}

fn hook_name(c: &Classifier) -> String {
    cls::hook_of(c).map_or_else(|| c.hook.to_string(), |h| h.to_string())
}

fn classifier_json(ctx: &Ctx, c: &Classifier, n: &Counters) -> Json {
    json!({
        "name": cls::name_of(c),
        "family": cls::family_name(c.family),
        "hook": hook_name(c),
        "match": cls::match_name(c.matches),
        "prefix": ctx.text(c.prefix()),
        "priority": c.priority,
        "ipv4_bits": c.ipv4_bits,
        "ipv6_bits": c.ipv6_bits,
        "counters": {
            "packets": n.packets,
            "unkeyed": n.unkeyed,
            "drop": n.drop,
            "accept": n.accept,
            "mark": n.mark,
        },
    })
}

/// One classifier on one line, nft-like: its settings, then its counters.
fn classifier_line(ctx: &Ctx, c: &Classifier, n: &Counters) -> String {
    let mut line = format!(
        "{} family {} hook {} match {} prefix {} priority {}",
        cls::name_of(c),
        cls::family_name(c.family),
        hook_name(c),
        cls::match_name(c.matches),
        ctx.text(c.prefix()),
        c.priority
    );
    if c.ipv4_bits != 0 {
        line += &format!(" ipv4-bits {}", c.ipv4_bits);
    }
    if c.ipv6_bits != 0 {
        line += &format!(" ipv6-bits {}", c.ipv6_bits);
    }
    line + &format!(
        " packets {} unkeyed {} drop {} accept {} mark {}",
        n.packets, n.unkeyed, n.drop, n.accept, n.mark
    )
}

fn element(ctx: &Ctx, out: &mut impl Write, command: ElementCommand) -> Result<(), Failure> {
    match command {
        ElementCommand::Add {
            name,
            target,
            action,
            ttl,
            keep_ttl,
        } => {
            let words: Vec<&str> = action.iter().map(String::as_str).collect();
            let action = cls::parse_action(&words).map_err(cls_usage)?;
            target.parse::<Target>().map_err(cls_usage)?;
            let kv = ctx.open()?;
            let (c, _) = kv.classifier(&name).map_err(|e| cls_failure(e, &name))?;
            let t = Target::parse_for(&target, &c).map_err(cls_usage)?;
            let ttl = Ttl {
                ms: ttl,
                keep: keep_ttl,
            };
            kv.add_element_with_ttl(&name, &t, action, ttl)
                .map_err(|e| cls_failure(e, &name))
        }
        ElementCommand::Delete { name, target } => {
            target.parse::<Target>().map_err(cls_usage)?;
            let kv = ctx.open()?;
            let (c, _) = kv.classifier(&name).map_err(|e| cls_failure(e, &name))?;
            let t = Target::parse_for(&target, &c).map_err(cls_usage)?;
            // The classifier exists: ENOENT is about the element.
            kv.delete(&cls::key_of(&c, &t)?, None).map_err(|e| match e {
                Error::NotFound => Failure {
                    code: 3,
                    message: format!("classifier {name} has no element {target}"),
                },
                e => e.into(),
            })
        }
        ElementCommand::List { name } => {
            let kv = ctx.open()?;
            let (c, _) = kv.classifier(&name).map_err(|e| cls_failure(e, &name))?;
            let elements = kv
                .elements_with_ttl(&name)
                .map_err(|e| cls_failure(e, &name))?;
            if ctx.json {
                let list: Vec<Json> = elements.iter().map(|e| element_json(&c, e)).collect();
                writeln!(out, "{}", json!({"elements": list}))?;
            } else {
                for e in &elements {
                    writeln!(out, "{}", element_line(&c, e))?;
                }
            }
            Ok(())
        }
    }
}

/// An element as `element list` prints it: `TARGET ACTION [expires 29.5s]`.
fn element_line(c: &Classifier, e: &nfkv::Element) -> String {
    let mut line = format!(
        "{} {}",
        e.target.display_with(c),
        cls::action_text(&e.action)
    );
    if let Some(left) = e.ttl {
        line += &format!(" expires {}", format_duration(left));
    }
    line
}

fn element_json(c: &Classifier, e: &nfkv::Element) -> Json {
    let target = e.target.display_with(c);
    let ttl_ms = ttl_json(e.ttl);
    match e.action {
        Action::Drop => json!({"target": target, "action": "drop", "ttl_ms": ttl_ms}),
        Action::Accept => json!({"target": target, "action": "accept", "ttl_ms": ttl_ms}),
        Action::Mark { mark, mask } => {
            json!({"target": target, "action": "mark", "mark": mark, "mask": mask, "ttl_ms": ttl_ms})
        }
    }
}

impl From<RestoreError> for Failure {
    /// The exit code of the error behind it, with the restore's report.
    fn from(e: RestoreError) -> Self {
        Failure {
            code: e.error().map_or(2, exit_code),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn put_flags_parse_and_conflict() {
        let cli = Cli::try_parse_from(["nfkv", "put", "k", "v", "--if-version", "7"]).unwrap();
        match cli.command {
            Some(Command::Put(a)) => assert_eq!(a.if_version, Some(7)),
            _ => panic!("not a put"),
        }
        assert!(Cli::try_parse_from(["nfkv", "put", "k", "v", "--create", "--replace"]).is_err());
        assert!(Cli::try_parse_from(["nfkv", "put", "k", "v", "--file", "x"]).is_err());
        assert!(Cli::try_parse_from(["nfkv", "--hex", "--base64", "info"]).is_err());
    }

    #[test]
    fn ttl_flags_take_durations_and_bad_ones_are_usage_errors() {
        let put = |args: &[&str]| {
            let mut all = vec!["nfkv", "put", "k", "v"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Some(Command::Put(a)) => {
                    let ttl = put_condition(&a).ttl;
                    assert_eq!((ttl.ms, ttl.keep), (a.ttl, a.keep_ttl));
                    (ttl.ms, ttl.keep)
                }
                _ => panic!("not a put"),
            })
        };
        for (ttl, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1500),
            ("30", 30_000),
            ("49d17h2m47.295s", u32::MAX),
        ] {
            assert_eq!(put(&["--ttl", ttl]).ok(), Some((Some(ms), false)), "{ttl}");
        }
        assert_eq!(put(&["--keep-ttl"]).ok(), Some((None, true)));
        assert_eq!(
            put(&["--ttl=5s", "--keep-ttl"]).ok(),
            Some((Some(5000), true))
        );
        assert_eq!(put(&[]).ok(), Some((None, false)));
        for (ttl, says) in [
            ("0", "at least 1ms"),
            ("0ms", "at least 1ms"),
            ("50d", "over the longest, 49d17h2m47.295s"),
            ("5x", "bad duration \"5x\": unknown unit \"x\""),
            ("5 s", "unknown unit"),
            ("-5s", "expected a number"),
            ("30m1h", "out of order"),
            ("abc", "expected a number"),
            ("", "it is empty"),
        ] {
            let e = put(&["--ttl", ttl]).err().unwrap();
            let m = e.to_string();
            assert!(e.exit_code() == 2 && m.contains(says), "{ttl:?}: {m}");
        }
        let e = Cli::try_parse_from(["nfkv", "del", "k", "--ttl", "5s"])
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 2, "del takes no --ttl: {e}");
    }

    #[test]
    fn time_left_shows_in_list_lines_and_json() {
        let ctx = Ctx {
            enc: Encoding::Text,
            explicit: false,
            json: false,
            optbase: None,
        };
        let entry = |value: &[u8], ttl: Option<u64>| nfkv::Entry {
            key: b"k".to_vec(),
            value: value.to_vec(),
            version: 7,
            ttl: ttl.map(Duration::from_millis),
        };
        assert_eq!(entry_line(&ctx, &entry(b"v", None), false), "k v");
        assert_eq!(
            entry_line(&ctx, &entry(b"v", Some(29_500)), false),
            "k v expires 29.5s"
        );
        assert_eq!(
            entry_line(&ctx, &entry(b"", Some(5_400_000)), false),
            "k  expires 1h30m"
        );
        assert_eq!(entry_line(&ctx, &entry(b"v", Some(1)), true), "k");
        assert_eq!(
            entry_json(&ctx, &entry(b"v", Some(1500))),
            json!({"key": "k", "value": "v", "version": 7, "ttl_ms": 1500})
        );
        assert_eq!(
            entry_json(&ctx, &entry(b"v", None)),
            json!({"key": "k", "value": "v", "version": 7, "ttl_ms": null})
        );
        assert_eq!(expires_text(None), "never");
        assert_eq!(expires_text(Some(Duration::from_millis(300))), "300ms");
    }

    #[test]
    fn optbases_beyond_an_int_are_usage_errors() {
        let max = nfkv::MAX_OPTBASE.to_string();
        let cli = Cli::try_parse_from(["nfkv", "--optbase", &max, "info"]).unwrap();
        assert_eq!(cli.optbase, Some(nfkv::MAX_OPTBASE));
        let over = (nfkv::MAX_OPTBASE + 1).to_string();
        let e = Cli::try_parse_from(["nfkv", "--optbase", &over, "info"])
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), 2, "{e}");
    }

    #[test]
    fn text_arguments_take_the_escapes_output_prints() {
        let ctx = Ctx {
            enc: Encoding::Text,
            explicit: false,
            json: false,
            optbase: None,
        };
        let arg = |s: &str| ctx.arg_bytes("KEY", OsString::from(s));
        assert_eq!(arg("a\\x20b").ok().unwrap(), b"a b");
        assert_eq!(arg("a b").ok().unwrap(), b"a b");
        assert_eq!(arg("back\\\\slash").ok().unwrap(), b"back\\slash");
        let bad = arg("C:\\dir").err().unwrap();
        assert!(bad.code == 2 && bad.message.contains("literal backslash"));
        let raw = OsString::from_vec(vec![0xff, b' ', 0]);
        assert_eq!(ctx.arg_bytes("KEY", raw).ok().unwrap(), [0xff, b' ', 0]);
    }

    #[test]
    fn the_long_help_points_to_the_one_description_of_the_file_format() {
        let help = Cli::command().render_long_help().to_string();
        let section = "Batch and save files";
        let pointer = format!("README.md of nfkv, section \"{section}\"");
        assert!(
            help.contains("BATCH AND SAVE FILES") && help.contains(&pointer),
            "--help lacks {pointer:?}"
        );
        let readme = include_str!("../../README.md");
        let (_, text) = readme
            .split_once(&format!("\n### {section}\n"))
            .expect("README.md has the section --help names");
        for needle in [
            "put [--create | --replace | --if-version=N] [--ttl=DURATION] [--keep-ttl]",
            "del [--if-version=N]",
            "# nfkv save v3 encoding=",
            "time_ms=",
            "Which restores are atomic",
        ] {
            assert!(text.contains(needle), "README section lacks {needle:?}");
        }
    }

    #[test]
    fn classifier_arguments_parse_and_bad_ones_are_usage_errors() {
        let cli = Cli::try_parse_from([
            "nfkv",
            "classifier",
            "add",
            "steer",
            "--hook",
            "prerouting",
            "--match",
            "saddr",
            "--prefix",
            "st/",
            "--ipv4-bits",
            "24",
            "--priority",
            "-10",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Classifier(ClassifierCommand::Add(a))) => {
                assert_eq!(a.hook, Hook::Prerouting);
                assert_eq!(a.family, nfkv::Family::Inet);
                assert_eq!(a.matches, nfkv::Match::Saddr);
                assert_eq!((a.priority, a.ipv4_bits, a.ipv6_bits), (-10, 24, 0));
            }
            _ => panic!("not a classifier add"),
        }
        let add = |extra: &[&str]| {
            let mut args = vec!["nfkv", "classifier", "add", "x", "--prefix", "p"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        for bad in [
            &["--hook", "ingress", "--match", "saddr"][..],
            &["--hook", "input", "--match", "sport"],
            &["--hook", "input", "--match", "saddr", "--family", "ipv4"],
            &["--hook", "input", "--match", "saddr", "--ipv4-bits", "33"],
            &["--hook", "input", "--match", "saddr", "--ipv6-bits", "129"],
            &["--match", "saddr"],
        ] {
            let e = add(bad).err().unwrap();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let e = add(&["--hook", "ingress", "--match", "saddr"])
            .err()
            .unwrap();
        assert!(e
            .to_string()
            .contains("prerouting, input, forward, output or postrouting"));
        let cli = Cli::try_parse_from([
            "nfkv",
            "element",
            "add",
            "steer",
            "10.1.2.0/24",
            "mark",
            "0x10/0xff",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Element(ElementCommand::Add { action, ttl, .. })) => {
                assert_eq!(
                    (action, ttl),
                    (vec!["mark".to_string(), "0x10/0xff".into()], None)
                )
            }
            _ => panic!("not an element add"),
        }
        let cli = Cli::try_parse_from([
            "nfkv",
            "element",
            "add",
            "bl",
            "192.0.2.7",
            "drop",
            "--ttl",
            "10m",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Element(ElementCommand::Add { action, ttl, .. })) => {
                assert_eq!((action, ttl), (vec!["drop".to_string()], Some(600_000)))
            }
            _ => panic!("not an element add"),
        }
        let e = Cli::try_parse_from([
            "nfkv",
            "element",
            "add",
            "bl",
            "192.0.2.7",
            "drop",
            "--ttl",
            "10x",
        ])
        .err()
        .unwrap();
        assert!(
            e.exit_code() == 2 && e.to_string().contains("unknown unit"),
            "{e}"
        );
        assert!(Cli::try_parse_from(["nfkv", "element", "add", "steer", "10.1.2.0/24"]).is_err());
    }

    #[test]
    fn bad_targets_and_actions_are_usage_errors_before_the_module_is_asked() {
        let ctx = Ctx {
            enc: Encoding::Text,
            explicit: false,
            json: false,
            // No module answers here: reaching it would fail with exit 5.
            optbase: Some(nfkv::MAX_OPTBASE),
        };
        let add = |target: &str, action: &[&str]| {
            element(
                &ctx,
                &mut Vec::new(),
                ElementCommand::Add {
                    name: "bl".into(),
                    target: target.into(),
                    action: action.iter().map(|s| s.to_string()).collect(),
                    ttl: None,
                    keep_ttl: false,
                },
            )
            .err()
            .unwrap()
        };
        let f = add("foo", &["drop"]);
        assert!(
            f.code == 2 && f.message.contains("not an address"),
            "{}",
            f.message
        );
        let f = add("tcp/70000", &["drop"]);
        assert!(
            f.code == 2 && f.message.contains("0..=65535"),
            "{}",
            f.message
        );
        let f = add("192.0.2.7", &["mark", "0x10/0x0f"]);
        assert!(
            f.code == 2 && f.message.contains("outside"),
            "{}",
            f.message
        );
        let f = add("192.0.2.7", &["reject"]);
        assert!(
            f.code == 2 && f.message.contains("an action is drop"),
            "{}",
            f.message
        );
        let f = classifier(
            &ctx,
            &mut Vec::new(),
            ClassifierCommand::Add(ClassifierArgs {
                name: "much-too-long-name".into(),
                hook: Hook::Input,
                family: nfkv::Family::Inet,
                matches: nfkv::Match::Saddr,
                prefix: "p".into(),
                priority: 0,
                ipv4_bits: 0,
                ipv6_bits: 0,
            }),
        )
        .err()
        .unwrap();
        assert!(
            f.code == 2 && f.message.contains("1..15 bytes"),
            "{}",
            f.message
        );
    }

    #[test]
    fn classifiers_print_as_a_line_and_as_json() {
        let ctx = Ctx {
            enc: Encoding::Text,
            explicit: false,
            json: true,
            optbase: None,
        };
        let c = cls::new_classifier(
            "steer",
            nfkv::Family::Ipv4,
            Hook::Prerouting,
            nfkv::Match::Saddr,
            b"st/",
            -1,
        )
        .and_then(|c| cls::with_subnets(c, 24, 0))
        .unwrap();
        let n = Counters {
            packets: 9,
            unkeyed: 1,
            drop: 2,
            accept: 3,
            mark: 4,
        };
        assert_eq!(
            classifier_line(&ctx, &c, &n),
            "steer family ip hook prerouting match saddr prefix st/ priority -1 ipv4-bits 24 packets 9 unkeyed 1 drop 2 accept 3 mark 4"
        );
        let j = classifier_json(&ctx, &c, &n);
        assert_eq!(
            j,
            json!({"name": "steer", "family": "ip", "hook": "prerouting", "match": "saddr",
                   "prefix": "st/", "priority": -1, "ipv4_bits": 24, "ipv6_bits": 0,
                   "counters": {"packets": 9, "unkeyed": 1, "drop": 2, "accept": 3, "mark": 4}})
        );
        let subnet: Target = "10.1.2.0".parse().unwrap();
        let element = |action, ttl: Option<u64>| nfkv::Element {
            target: subnet,
            action,
            ttl: ttl.map(Duration::from_millis),
        };
        let mark = Action::Mark {
            mark: 16,
            mask: u32::MAX,
        };
        assert_eq!(
            element_json(&c, &element(mark, None)),
            json!({"target": "10.1.2.0/24", "action": "mark", "mark": 16, "mask": 4294967295u32, "ttl_ms": null})
        );
        assert_eq!(
            element_json(&c, &element(Action::Drop, Some(600_000))),
            json!({"target": "10.1.2.0/24", "action": "drop", "ttl_ms": 600_000})
        );
        assert_eq!(
            element_line(&c, &element(Action::Drop, Some(599_500))),
            "10.1.2.0/24 drop expires 9m59.5s"
        );
        assert_eq!(
            element_line(&c, &element(mark, None)),
            "10.1.2.0/24 mark 0x10"
        );
    }

    #[test]
    fn the_long_help_describes_classifiers() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("CLASSIFIERS")
                && help.contains("docs/ABI.md of nfkv, section \"Classifiers\"")
        );
        let abi = include_str!("../../docs/ABI.md");
        assert!(
            abi.contains("\n## Classifiers\n"),
            "docs/ABI.md lacks the section --help names"
        );
    }

    #[test]
    fn errors_map_to_documented_exit_codes() {
        assert_eq!(Failure::from(Error::NotFound).code, 3);
        assert_eq!(Failure::from(Error::Exists).code, 4);
        assert_eq!(Failure::from(Error::VersionMismatch).code, 4);
        assert_eq!(Failure::from(Error::NotLoaded { optbase: 1 }).code, 5);
        assert_eq!(Failure::from(Error::PermissionDenied).code, 6);
        assert!(Failure::from(Error::NotLoaded { optbase: 2048 })
            .message
            .contains("insmod nfkv.ko"));
    }

    #[test]
    fn restore_failures_keep_their_error_s_exit_code_and_say_what_happened() {
        let refused = Failure::from(RestoreError::Refused {
            error: Error::Exists,
        });
        assert_eq!(refused.code, 4);
        assert_eq!(
            refused.message,
            "key exists (--create); nothing was restored (the restore is one atomic batch)"
        );
        let stopped = Failure::from(RestoreError::Stopped {
            error: Error::NoSpace(nfkv::Limit::Entries),
            failed: 1,
            batches: 2,
            report: "restore stopped at batch 2 of 2".into(),
        });
        assert_eq!(
            (stopped.code, &stopped.message[..]),
            (1, "restore stopped at batch 2 of 2")
        );
        assert_eq!(
            Failure::from(RestoreError::Table(Error::PermissionDenied)).code,
            6
        );
        assert_eq!(Failure::from(RestoreError::UnknownPrefix).code, 2);
    }

    #[test]
    fn changes_print_as_lines_and_json_lines() {
        let mut ctx = Ctx {
            enc: Encoding::Text,
            explicit: false,
            json: false,
            optbase: None,
        };
        let change = |generation, last, kind, key: &[u8], value: Option<&[u8]>| nfkv::Change {
            generation,
            last,
            kind,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        };
        let put = change(7, 9, ChangeKind::Put, b"a b", Some(b"-v"));
        let stale = change(8, 9, ChangeKind::Put, b"k", None);
        let flush = change(6, 9, ChangeKind::Flush, b"", None);
        let del = change(9, 9, ChangeKind::Delete, b"k", None);
        let expire = change(10, 10, ChangeKind::Expire, b"t", None);
        assert_eq!(change_line(&ctx, &put, false), "7 9 put a\\x20b");
        assert_eq!(change_line(&ctx, &put, true), "7 9 put a\\x20b \\x2dv");
        assert_eq!(change_line(&ctx, &stale, true), "8 9 put k -");
        assert_eq!(change_line(&ctx, &flush, true), "6 9 flush");
        assert_eq!(change_line(&ctx, &del, true), "9 9 delete k");
        assert_eq!(change_line(&ctx, &expire, false), "10 10 expire t");
        assert_eq!(
            change_json(&ctx, &put),
            json!({"generation": 7, "last": 9, "type": "put", "key": "a\\x20b", "value": "\\x2dv"})
        );
        assert_eq!(
            change_json(&ctx, &stale),
            json!({"generation": 8, "last": 9, "type": "put", "key": "k"})
        );
        assert_eq!(
            change_json(&ctx, &flush),
            json!({"generation": 6, "last": 9, "type": "flush"})
        );
        assert_eq!(
            change_json(&ctx, &expire),
            json!({"generation": 10, "last": 10, "type": "expire", "key": "t"})
        );
        assert_eq!(resync_line(&ctx, 40), "40 40 resync");
        ctx.json = true;
        assert_eq!(
            resync_line(&ctx, 40),
            r#"{"generation":40,"type":"resync"}"#
        );
        ctx.enc = Encoding::Hex;
        assert_eq!(change_line(&ctx, &put, true), "7 9 put 612062 2d76");
        assert_eq!(change_json(&ctx, &put)["key"], "612062");
    }

    #[test]
    fn watch_arguments_parse() {
        let cli = Cli::try_parse_from([
            "nfkv",
            "--json",
            "watch",
            "-p",
            "cfg/",
            "--values",
            "--since",
            "12",
            "--count",
            "3",
            "--timeout",
            "1m30s",
        ])
        .unwrap();
        assert!(cli.json);
        match cli.command {
            Some(Command::Watch(a)) => {
                assert_eq!(a.prefix, Some("cfg/".into()));
                assert!(a.values);
                assert_eq!((a.since, a.count), (Some(12), Some(3)));
                assert_eq!(a.timeout, Some(Duration::from_secs(90)));
            }
            _ => panic!("not a watch"),
        }
        for bad in [
            &["--timeout", "5x"][..],
            &["--count", "-1"],
            &["--since", "x"],
            &["--ttl", "5s"],
        ] {
            let mut args = vec!["nfkv", "watch"];
            args.extend_from_slice(bad);
            let e = Cli::try_parse_from(args).err().unwrap();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("WATCHING CHANGES") && help.contains("G G resync"));
    }
}
