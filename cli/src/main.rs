//! `nfkv`: command-line client for the nfkv kernel module, over the `nfkv`
//! library (which does everything but argument parsing and output).
//!
//! Exit codes: 0 success, 1 error, 2 usage, 3 key not found, 4 condition
//! failed (exists / version mismatch), 5 module not loaded, 6 permission denied.

use clap::{Args, CommandFactory, Parser, Subcommand};
use nfkv::{batchfile, Restore, RestoreError, SNAPSHOT_RETRIES};
use nfkv::{decode_escaped, decode_text, encode_text, Condition, Encoding, Error, Nfkv};
use nfkv::{GET_COMMAND_NAMES, MAX_BATCH_OPS, MAX_REQUEST_LEN, SET_COMMAND_NAMES};
use serde_json::{json, Value as Json};
use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// The man page's and `--help`'s closing sections.
const LONG_HELP: &str = "\
KEYS AND VALUES
  Keys are 1-255 bytes, values 0-max_value_len bytes, both binary. With --hex or --base64 every key, value and prefix, in arguments and output, is lowercase hexadecimal or padded base64. In the default text encoding, output prints printable ASCII as is, a backslash as \\\\, a leading '-' as \\x2d and every other byte as \\xNN, so one key or value is one blank-free token. Arguments (KEY, VALUE, --prefix) take the same escapes: \\xNN is the byte NN, \\\\ a backslash, any other byte stands for itself; a backslash starting anything else is an error. So whatever list prints can be typed back: nfkv del 'a\\x20b' removes the key \"a b\". A value read with --file or from standard input is taken as is. get prints a value's raw bytes (text encoding) or its encoded form.

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
            let batch = read_file(&ctx, file.as_deref())?.to_batch(false);
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
    let (generation, entries) = ctx.open()?.snapshot(&prefix, SNAPSHOT_RETRIES)?;
    batchfile::write_save(out, ctx.enc, &prefix, generation, &entries)?;
    Ok(())
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
    restore.run(&ctx.open()?, ctx.enc).map_err(Failure::from)
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
            "put [--create | --replace | --if-version=N]...",
            "del [--if-version=N]",
            "# nfkv save v2 encoding=",
            "Which restores are atomic",
        ] {
            assert!(text.contains(needle), "README section lacks {needle:?}");
        }
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
}
