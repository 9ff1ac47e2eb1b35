//! `nfkv`: command-line client for the nfkv kernel module.
//!
//! Exit codes: 0 success, 1 error, 2 usage, 3 key not found, 4 condition
//! failed (exists / version mismatch), 5 module not loaded, 6 permission denied.

use clap::{Args, CommandFactory, Parser, Subcommand};
use nfkv::{decode_text, encode_text, Batch, Condition, Encoding, Error, Nfkv};
use serde_json::{json, Value as Json};
use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "nfkv",
    about = "Store and read key/value entries in the nfkv kernel module"
)]
#[command(
    after_help = "Exit status: 0 success, 1 error, 2 usage, 3 key not found, 4 condition failed (exists or version mismatch), 5 nfkv.ko not loaded, 6 permission denied."
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
    #[arg(long, global = true)]
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
    /// List entries in key order
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
    /// Apply operations from FILE (or stdin) all or nothing, one per line:
    /// `put KEY VALUE [create|replace|if-version=N]`, `del KEY [if-version=N]`,
    /// `flush`; tokens in the chosen encoding (default: text escapes \\ and \xNN)
    Batch { file: Option<PathBuf> },
    /// Print every entry as a batch file that `restore` reads back
    Save {
        /// Only keys starting with this
        #[arg(long, short = 'p')]
        prefix: Option<OsString>,
    },
    /// Apply a `save` file all or nothing
    Restore {
        file: Option<PathBuf>,
        /// Empty the table first, in the same atomic batch
        #[arg(long)]
        flush: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff)
    #[command(hide = true)]
    Manpage,
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
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::NotFound => 3,
            Error::Exists | Error::VersionMismatch => 4,
            Error::NotLoaded { .. } => 5,
            Error::PermissionDenied => 6,
            _ => 1,
        };
        Failure {
            code,
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

    /// A key or value given on the command line: raw bytes in text mode.
    fn arg_bytes(&self, what: &str, arg: OsString) -> Result<Vec<u8>, Failure> {
        match self.enc {
            Encoding::Text => Ok(arg.into_vec()),
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
        Command::Get { key, version } => get(&ctx, &mut out, key, version),
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
        Command::Batch { file } => {
            let batch = read_batch(&ctx, file.as_deref(), false)?;
            Ok(ctx.open()?.apply(&batch)?)
        }
        Command::Save { prefix } => save(&ctx, &mut out, prefix),
        Command::Restore { file, flush } => {
            let batch = read_batch(&ctx, file.as_deref(), flush)?;
            Ok(ctx.open()?.apply(&batch)?)
        }
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
            "generation": i.generation,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "module version: {}", i.module_version_str())?;
        writeln!(out, "abi version:    {}", i.abi_version)?;
        writeln!(out, "optnames:       {}..{}", i.optbase, i.optbase + 15)?;
        writeln!(out, "entries:        {} of {}", i.entries, i.max_entries)?;
        writeln!(out, "bytes used:     {}", i.bytes_used)?;
        writeln!(out, "generation:     {}", i.generation)?;
        writeln!(out, "max key len:    {}", i.max_key_len)?;
        writeln!(out, "max value len:  {}", i.max_value_len)?;
        writeln!(out, "max batch ops:  {}", i.max_batch_ops)?;
    }
    Ok(())
}

fn put(ctx: &Ctx, args: PutArgs) -> Result<(), Failure> {
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
    let cond = Condition {
        create_only: args.create,
        replace_only: args.replace,
        if_version: args.if_version,
    };
    Ok(ctx.open()?.put(&key, &value, cond)?)
}

fn get(ctx: &Ctx, out: &mut impl Write, key: OsString, show_version: bool) -> Result<(), Failure> {
    let key = ctx.arg_bytes("KEY", key)?;
    let v = ctx.open()?.get(&key)?;
    if ctx.json {
        let j = json!({
            "key": ctx.text(&key),
            "value": ctx.text(&v.value),
            "version": v.version,
            "encoding": ctx.enc.name(),
        });
        writeln!(out, "{j}")?;
    } else {
        if show_version {
            writeln!(out, "version {}", v.version)?;
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
    json!({"key": ctx.text(&e.key), "value": ctx.text(&e.value), "version": e.version})
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
        if keys_only {
            writeln!(out, "{}", ctx.text(&e.key))
        } else {
            writeln!(out, "{} {}", ctx.text(&e.key), ctx.text(&e.value))
        }
    };
    if consistent || ctx.json {
        let (generation, entries) = kv.snapshot(&prefix, 1000)?;
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

const SET_NAMES: [&str; 4] = ["put", "del", "flush", "batch"];
const GET_NAMES: [&str; 4] = ["info", "value", "list", "stats"];

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
        let j = json!({"set": side(&SET_NAMES, &s.set), "get": side(&GET_NAMES, &s.get)});
        writeln!(out, "{j}")?;
    } else {
        writeln!(out, "{:<12} {:>12} {:>12}", "command", "ok", "failed")?;
        for (name, c) in SET_NAMES.iter().zip(&s.set) {
            writeln!(
                out,
                "{:<12} {:>12} {:>12}",
                format!("set {name}"),
                c.ok,
                c.failed
            )?;
        }
        for (name, c) in GET_NAMES.iter().zip(&s.get) {
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
    let (generation, entries) = ctx.open()?.snapshot(&prefix, 1000)?;
    writeln!(
        out,
        "# nfkv save: {} entries, generation {generation}, encoding {}",
        entries.len(),
        ctx.enc.name()
    )?;
    for e in &entries {
        writeln!(out, "put {} {}", ctx.text(&e.key), ctx.text(&e.value))?;
    }
    Ok(())
}

/// Reads a batch file; `flush` asks for an atomic flush before its ops.
fn read_batch(ctx: &Ctx, file: Option<&std::path::Path>, flush: bool) -> Result<Batch, Failure> {
    let reader: Box<dyn BufRead> = match file {
        Some(p) if p.as_os_str() != "-" => {
            Box::new(io::BufReader::new(std::fs::File::open(p).map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", p.display()))
            })?))
        }
        _ => Box::new(io::stdin().lock()),
    };
    let mut batch = Batch::new();
    if flush {
        batch.flush();
    }
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        parse_batch_line(ctx, &line, &mut batch)
            .map_err(|e| usage(format!("line {}: {e}", n + 1)))?;
    }
    Ok(batch)
}

/// One line of a batch file.
fn parse_batch_line(ctx: &Ctx, line: &str, batch: &mut Batch) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let mut tokens = line.split_whitespace();
    let verb = tokens.next().unwrap_or_default();
    let words: Vec<&str> = tokens.collect();
    let bytes = |t: &str| decode_text(t, ctx.enc);
    let mut cond = Condition::default();
    let (args, flags): (Vec<&str>, Vec<&str>) = words
        .iter()
        .partition(|w| !matches!(**w, "create" | "replace") && !w.starts_with("if-version="));
    for f in flags {
        match f {
            "create" => cond.create_only = true,
            "replace" => cond.replace_only = true,
            v => {
                let n = v["if-version=".len()..]
                    .parse()
                    .map_err(|_| format!("bad {v}"))?;
                cond.if_version = Some(n);
            }
        }
    }
    match (verb, args.as_slice()) {
        ("put", [k]) => batch.put(&bytes(k)?, &[], cond),
        ("put", [k, v]) => batch.put(&bytes(k)?, &bytes(v)?, cond),
        ("del" | "delete", [k]) if !cond.create_only && !cond.replace_only => {
            batch.delete(&bytes(k)?, cond.if_version)
        }
        ("flush", []) if batch.is_empty() => batch.flush(),
        ("flush", []) => return Err("flush must come first".into()),
        _ => return Err(format!("cannot parse {line:?}")),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(enc: Encoding) -> Ctx {
        Ctx {
            enc,
            json: false,
            optbase: None,
        }
    }

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
    fn batch_lines_parse() {
        let c = ctx(Encoding::Text);
        let mut b = Batch::new();
        parse_batch_line(&c, "# comment", &mut b).unwrap();
        parse_batch_line(&c, "put a\\x20b v create", &mut b).unwrap();
        parse_batch_line(&c, "del a if-version=3", &mut b).unwrap();
        parse_batch_line(&c, "put empty", &mut b).unwrap();
        assert_eq!(b.len(), 3);
        assert!(parse_batch_line(&c, "del a create", &mut b).is_err());
        assert!(parse_batch_line(&c, "frob a", &mut b).is_err());
        assert!(parse_batch_line(&c, "flush", &mut b).is_err());
        assert!(parse_batch_line(&c, "put a b c", &mut b).is_err());
        let mut fresh = Batch::new();
        parse_batch_line(&c, "flush", &mut fresh).unwrap();
        assert!(!fresh.is_empty());
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
}
