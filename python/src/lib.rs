//! `nfkv._native`: the thin native layer of the `nfkv` Python package.
//!
//! Every request goes through the `nfkv` Rust crate (the one implementation
//! of the ABI); this module only converts arguments and results and maps the
//! crate's errors to Python exceptions. The GIL is released around every call
//! that reaches the kernel, and around reading a batch file. The Pythonic API
//! (mapping protocol, dataclasses, batches, iterators) lives in
//! `nfkv/__init__.py`.

use nfkv::batchfile::{self, Kind};
use nfkv::classifier as cls;
use nfkv::{Action, Target};
use nfkv::{Batch, Condition, Encoding, Error, Nfkv, Restore, RestoreError, Ttl};
use nfkv::{WatchOptions, WatchSource, Watched, Watcher};
use nfkv::{GET_COMMAND_NAMES, MAX_OPTBASE, SET_COMMAND_NAMES, SNAPSHOT_RETRIES};
use pyo3::exceptions::{PyKeyError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyType};
use std::sync::{Arc, Mutex};

/// errno for replies the library cannot decode or an ABI it does not speak.
const EPROTO: i32 = 71;

/// An exception class of `nfkv._errors` (defined in Python, documented there).
fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: GILOnceCell<Py<PyModule>> = GILOnceCell::new();
    let module = MODULE.get_or_try_init(py, || py.import("nfkv._errors").map(|m| m.unbind()))?;
    Ok(module.bind(py).getattr(name)?.downcast_into::<PyType>()?)
}

/// What a failed call knew about the entry it was conditioned on.
#[derive(Default)]
struct Context {
    /// The key of a single-key request.
    key: Option<Vec<u8>>,
    /// The version the caller expected (`if_version`).
    expected: Option<u64>,
    /// The entry's version read right after the failure, where known.
    current: Option<u64>,
}

/// Maps a library error to the Python exception users expect.
fn to_pyerr(py: Python<'_>, err: Error, ctx: Context) -> PyErr {
    let msg = err.to_string();
    exception(py, err, ctx, msg)
}

/// The exception for `err`, saying `msg`.
fn exception(py: Python<'_>, err: Error, ctx: Context, msg: String) -> PyErr {
    let errno = err.errno();
    let build = || -> PyResult<PyErr> {
        Ok(match err {
            Error::NotFound => match ctx.key {
                Some(key) => PyKeyError::new_err(PyBytes::new(py, &key).unbind()),
                None => PyKeyError::new_err(msg),
            },
            Error::PermissionDenied => PyPermissionError::new_err((libc_errno(errno), msg)),
            Error::NotLoaded { .. } => PyErr::from_value(
                error_class(py, "NotLoadedError")?.call1((libc_errno(errno), msg))?,
            ),
            Error::NoSpace(limit) => {
                let exc = error_class(py, "NoSpaceError")?.call1((libc_errno(errno), msg))?;
                exc.setattr("limit", limit.parameter())?;
                PyErr::from_value(exc)
            }
            Error::Exists | Error::VersionMismatch => {
                let exc = error_class(py, "ConditionError")?.call1((libc_errno(errno), msg))?;
                exc.setattr("key", ctx.key.map(|k| PyBytes::new(py, &k).unbind()))?;
                exc.setattr("expected_version", ctx.expected)?;
                exc.setattr("current_version", ctx.current)?;
                PyErr::from_value(exc)
            }
            Error::Invalid(_) | Error::TooLarge(_) | Error::BadAction => PyValueError::new_err(msg),
            Error::ClassifiersUnsupported | Error::Interrupted => {
                PyOSError::new_err((libc_errno(errno), msg))
            }
            Error::AbiMismatch { .. } | Error::BadReply(_) => PyOSError::new_err((EPROTO, msg)),
            Error::Os { .. } => match errno {
                // OSError(errno, ...) picks the matching subclass itself.
                Some(e) => PyOSError::new_err((e, msg)),
                None => PyOSError::new_err(msg),
            },
        })
    };
    build().unwrap_or_else(|e| e)
}

fn libc_errno(errno: Option<i32>) -> i32 {
    errno.unwrap_or(0)
}

/// A failed restore: the exception of the error behind it (ValueError when
/// the file cannot be restored as asked), saying what the table holds.
fn restore_pyerr(py: Python<'_>, err: RestoreError) -> PyErr {
    let msg = err.to_string();
    match err {
        RestoreError::UnknownPrefix => PyValueError::new_err(msg),
        RestoreError::Table(e) => to_pyerr(py, e, Context::default()),
        RestoreError::Refused { error } | RestoreError::Stopped { error, .. } => {
            exception(py, error, Context::default(), msg)
        }
    }
}

/// The encoding called `name`, or ValueError.
fn encoding(name: &str) -> PyResult<Encoding> {
    Encoding::from_name(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "encoding must be 'text', 'hex' or 'base64', not {name:?}"
        ))
    })
}

/// Reads a batch or save file; `encoding` as asked for (None: the header's,
/// else text). A malformed line is a ValueError naming it.
fn read_file(py: Python<'_>, data: &[u8], encoding: Option<Encoding>) -> PyResult<batchfile::File> {
    py.allow_threads(|| batchfile::read(data, encoding))
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A `put` or `delete` of a batch, as the Python layer hands it over:
/// (is_put, key, value, create, replace, if_version, ttl_ms, keep_ttl).
type BatchOp<'py> = (
    bool,
    Bound<'py, PyBytes>,
    Bound<'py, PyBytes>,
    bool,
    bool,
    Option<u64>,
    Option<u32>,
    bool,
);

/// An entry as the Python layer gets it: (key, value, version, ttl_ms),
/// `ttl_ms` None for an entry that never expires.
type EntryTuple<'py> = (Bound<'py, PyBytes>, Bound<'py, PyBytes>, u64, Option<u64>);

fn entry_tuple<'py>(py: Python<'py>, e: &nfkv::Entry) -> EntryTuple<'py> {
    (
        PyBytes::new(py, &e.key),
        PyBytes::new(py, &e.value),
        e.version,
        ttl_ms(e.ttl),
    )
}

/// Milliseconds left (whole: the module reports milliseconds).
fn ttl_ms(ttl: Option<std::time::Duration>) -> Option<u64> {
    ttl.map(|d| d.as_millis() as u64)
}

/// One open connection to the module (a socket and its optname base).
#[pyclass(module = "nfkv._native", frozen)]
struct Connection {
    /// `None` once closed; calls in flight keep their own reference.
    kv: Mutex<Option<Arc<Nfkv>>>,
}

impl Connection {
    /// Classifier `name` and `target` (text) as an element of it: the
    /// target's syntax is checked before the classifier is looked up.
    fn element_target(
        &self,
        py: Python<'_>,
        name: &str,
        target: &str,
    ) -> PyResult<(nfkv::Classifier, Target)> {
        target.parse::<Target>().map_err(|e| to_pyerr_plain(&e))?;
        let kv = self.kv()?;
        let (c, _) = py
            .allow_threads(|| kv.classifier(name))
            .map_err(|e| cls_pyerr(py, e, name))?;
        let t = Target::parse_for(target, &c).map_err(|e| to_pyerr_plain(&e))?;
        Ok((c, t))
    }

    /// The connection, or `ValueError` when closed.
    fn kv(&self) -> PyResult<Arc<Nfkv>> {
        self.kv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| PyValueError::new_err("operation on a closed nfkv table"))
    }
}

/// The current version of `key`, read after a failed conditional write.
fn current_version(kv: &Nfkv, key: &[u8]) -> Option<u64> {
    kv.get(key).ok().map(|v| v.version)
}

/// Condition of a put; contradictions are left to the library and module
/// (the Python layer checked the TTL's range).
fn condition(
    create: bool,
    replace: bool,
    if_version: Option<u64>,
    ttl_ms: Option<u32>,
    keep_ttl: bool,
) -> Condition {
    Condition {
        create_only: create,
        replace_only: replace,
        if_version,
        ttl: Ttl {
            ms: ttl_ms,
            keep: keep_ttl,
        },
    }
}

/// The exception of `err`, the failure of a command on classifier `name`
/// (its message names the classifier: see `nfkv::classifier::describe`).
fn cls_pyerr(py: Python<'_>, err: Error, name: &str) -> PyErr {
    let msg = cls::describe(&err, name);
    exception(py, err, Context::default(), msg)
}

/// A classifier as the Python layer builds its dict from it: `(name,
/// family, hook, match, prefix, priority, ipv4_bits, ipv6_bits, (packets,
/// unkeyed, drop, accept, mark))`.
type ClassifierTuple<'py> = (
    String,
    &'static str,
    String,
    &'static str,
    Bound<'py, PyBytes>,
    i32,
    u8,
    u8,
    (u64, u64, u64, u64, u64),
);

/// The words of an action's text (`"mark 0x10/0xff"`), parsed.
fn action(text: &str) -> PyResult<Action> {
    let words: Vec<&str> = text.split_whitespace().collect();
    cls::parse_action(&words).map_err(|e| to_pyerr_plain(&e))
}

/// A ValueError saying what the library refused in an argument.
fn to_pyerr_plain(e: &Error) -> PyErr {
    match e {
        Error::Invalid(m) => PyValueError::new_err(m.clone()),
        e => PyValueError::new_err(e.to_string()),
    }
}

#[pymethods]
impl Connection {
    /// The optname base in use.
    #[getter]
    fn optbase(&self) -> PyResult<u32> {
        Ok(self.kv()?.optbase())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.kv.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// Closes the socket (once no call is using it). Idempotent.
    fn close(&self) {
        self.kv.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// `((abi_version, optbase, max_key_len, max_value_len, max_entries,
    /// max_batch_ops, entries, bytes_used, generation, module_version),
    /// (max_bytes, charged_to_budget, charged, budget_used, budget_size))`
    /// (two tuples: PyO3 converts tuples of up to 12).
    #[allow(clippy::type_complexity)]
    fn info(
        &self,
        py: Python<'_>,
    ) -> PyResult<(
        (u32, u32, u32, u32, u32, u32, u32, u64, u64, String),
        (u64, bool, u64, u64, u64),
    )> {
        let kv = self.kv()?;
        let i = py
            .allow_threads(|| kv.info())
            .map_err(|e| to_pyerr(py, e, Context::default()))?;
        let end = i
            .module_version
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(i.module_version.len());
        let version = String::from_utf8_lossy(&i.module_version[..end]).into_owned();
        Ok((
            (
                i.abi_version,
                i.optbase,
                i.max_key_len,
                i.max_value_len,
                i.max_entries,
                i.max_batch_ops,
                i.entries,
                i.bytes_used,
                i.generation,
                version,
            ),
            (
                i.max_bytes,
                i.charged_to_budget(),
                i.charged,
                i.budget_used,
                i.budget_size,
            ),
        ))
    }

    /// `([(ok, failed)] of the set commands, [(ok, failed)] of the get commands)`.
    #[allow(clippy::type_complexity)]
    fn stats(&self, py: Python<'_>) -> PyResult<(Vec<(u64, u64)>, Vec<(u64, u64)>)> {
        let kv = self.kv()?;
        let s = py
            .allow_threads(|| kv.stats())
            .map_err(|e| to_pyerr(py, e, Context::default()))?;
        let pairs = |c: &[nfkv::Counter]| c.iter().map(|c| (c.ok, c.failed)).collect();
        Ok((pairs(&s.set), pairs(&s.get)))
    }

    /// Stores `value` under `key` if the condition holds; `ttl_ms`: the
    /// entry expires that many ms after the write; `keep_ttl`: a present
    /// entry's expiry is kept.
    #[pyo3(signature = (key, value, create, replace, if_version, ttl_ms=None, keep_ttl=false))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        key: &[u8],
        value: &[u8],
        create: bool,
        replace: bool,
        if_version: Option<u64>,
        ttl_ms: Option<u32>,
        keep_ttl: bool,
    ) -> PyResult<()> {
        let kv = self.kv()?;
        let cond = condition(create, replace, if_version, ttl_ms, keep_ttl);
        let (result, current) = py.allow_threads(|| match kv.put(key, value, cond) {
            Err(e @ (Error::Exists | Error::VersionMismatch)) => {
                let current = current_version(&kv, key);
                (Err(e), current)
            }
            r => (r, None),
        });
        result.map_err(|e| {
            to_pyerr(
                py,
                e,
                Context {
                    key: Some(key.to_vec()),
                    expected: if_version,
                    current,
                },
            )
        })
    }

    /// `(version, value, ttl_ms)` of `key`; `ttl_ms` None: never expires.
    #[allow(clippy::type_complexity)]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &[u8],
    ) -> PyResult<(u64, Bound<'py, PyBytes>, Option<u64>)> {
        let kv = self.kv()?;
        match py.allow_threads(|| kv.get(key)) {
            Ok(v) => Ok((v.version, PyBytes::new(py, &v.value), ttl_ms(v.ttl))),
            Err(e) => Err(to_pyerr(
                py,
                e,
                Context {
                    key: Some(key.to_vec()),
                    ..Default::default()
                },
            )),
        }
    }

    /// Removes `key`, if its version is `if_version` when given.
    #[pyo3(signature = (key, if_version))]
    fn delete(&self, py: Python<'_>, key: &[u8], if_version: Option<u64>) -> PyResult<()> {
        let kv = self.kv()?;
        let (result, current) = py.allow_threads(|| match kv.delete(key, if_version) {
            Err(e @ Error::VersionMismatch) => {
                let current = current_version(&kv, key);
                (Err(e), current)
            }
            r => (r, None),
        });
        result.map_err(|e| {
            to_pyerr(
                py,
                e,
                Context {
                    key: Some(key.to_vec()),
                    expected: if_version,
                    current,
                },
            )
        })
    }

    /// Removes every entry.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let kv = self.kv()?;
        py.allow_threads(|| kv.flush())
            .map_err(|e| to_pyerr(py, e, Context::default()))
    }

    /// Applies `ops` (after emptying the table if `flush`) all or nothing.
    fn apply(&self, py: Python<'_>, ops: Vec<BatchOp<'_>>, flush: bool) -> PyResult<()> {
        let kv = self.kv()?;
        let mut batch = Batch::new();
        if flush {
            batch.flush();
        }
        for (is_put, key, value, create, replace, if_version, ttl_ms, keep_ttl) in &ops {
            if *is_put {
                batch.put(
                    key.as_bytes(),
                    value.as_bytes(),
                    condition(*create, *replace, *if_version, *ttl_ms, *keep_ttl),
                );
            } else {
                batch.delete(key.as_bytes(), *if_version);
            }
        }
        py.allow_threads(|| kv.apply(&batch))
            .map_err(|e| to_pyerr(py, e, Context::default()))
    }

    /// One page after `after`: `(generation, [(key, value, version,
    /// ttl_ms)], more)`.
    fn list_page<'py>(
        &self,
        py: Python<'py>,
        prefix: &[u8],
        after: &[u8],
    ) -> PyResult<(u64, Vec<EntryTuple<'py>>, bool)> {
        let kv = self.kv()?;
        let page = py
            .allow_threads(|| kv.list_page(prefix, after))
            .map_err(|e| to_pyerr(py, e, Context::default()))?;
        let entries = page.entries.iter().map(|e| entry_tuple(py, e)).collect();
        Ok((page.generation, entries, page.more))
    }

    /// Every entry under `prefix`, all pages from one generation:
    /// `(generation, [(key, value, version, ttl_ms)])`.
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
        prefix: &[u8],
    ) -> PyResult<(u64, Vec<EntryTuple<'py>>)> {
        let kv = self.kv()?;
        let (generation, entries) = py
            .allow_threads(|| kv.snapshot(prefix, SNAPSHOT_RETRIES))
            .map_err(|e| to_pyerr(py, e, Context::default()))?;
        let entries = entries.iter().map(|e| entry_tuple(py, e)).collect();
        Ok((generation, entries))
    }

    /// What `nfkv save` writes for the entries under `prefix`, in `encoding`.
    fn save<'py>(
        &self,
        py: Python<'py>,
        prefix: &[u8],
        encoding: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let enc = self::encoding(encoding)?;
        let kv = self.kv()?;
        let out = py
            .allow_threads(|| {
                let mut out = Vec::new();
                batchfile::save(&kv, &mut out, enc, prefix).map(|()| out)
            })
            .map_err(|e| to_pyerr(py, e, Context::default()))?;
        Ok(PyBytes::new(py, &out))
    }

    /// Restores a batch or save file (as `nfkv restore [--flush]`):
    /// `(records applied, puts left out as expired since the save, batches)`.
    #[pyo3(signature = (data, flush, encoding))]
    fn restore(
        &self,
        py: Python<'_>,
        data: &[u8],
        flush: bool,
        encoding: Option<&str>,
    ) -> PyResult<(usize, usize, usize)> {
        let enc = encoding.map(self::encoding).transpose()?;
        let kv = self.kv()?;
        let file = read_file(py, data, enc)?;
        let restore = Restore::new(&file, flush).map_err(|e| restore_pyerr(py, e))?;
        let done = py
            .allow_threads(|| restore.run(&kv, enc.unwrap_or_default()))
            .map_err(|e| restore_pyerr(py, e))?;
        Ok((done.records, done.expired, done.batches))
    }

    /// Adds a classifier (names as the CLI takes them).
    #[pyo3(signature = (name, family, hook, matches, prefix, priority, ipv4_bits, ipv6_bits))]
    #[allow(clippy::too_many_arguments)]
    fn add_classifier(
        &self,
        py: Python<'_>,
        name: &str,
        family: &str,
        hook: &str,
        matches: &str,
        prefix: &[u8],
        priority: i32,
        ipv4_bits: u8,
        ipv6_bits: u8,
    ) -> PyResult<()> {
        let hook: nfkv::Hook = hook.parse().map_err(|e| to_pyerr_plain(&e))?;
        let family = cls::parse_family(family).map_err(|e| to_pyerr_plain(&e))?;
        let matches = cls::parse_match(matches).map_err(|e| to_pyerr_plain(&e))?;
        let c = cls::new_classifier(name, family, hook, matches, prefix, priority)
            .and_then(|c| cls::with_subnets(c, ipv4_bits, ipv6_bits))
            .map_err(|e| to_pyerr_plain(&e))?;
        let kv = self.kv()?;
        py.allow_threads(|| kv.add_classifier(&c))
            .map_err(|e| cls_pyerr(py, e, name))
    }

    /// Removes classifier `name`.
    fn delete_classifier(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let kv = self.kv()?;
        py.allow_threads(|| kv.delete_classifier(name))
            .map_err(|e| cls_pyerr(py, e, name))
    }

    /// Every classifier, in the order packets see them.
    fn classifiers<'py>(&self, py: Python<'py>) -> PyResult<Vec<ClassifierTuple<'py>>> {
        let kv = self.kv()?;
        let all = py
            .allow_threads(|| kv.classifiers())
            .map_err(|e| to_pyerr(py, e, Context::default()))?;
        Ok(all
            .iter()
            .map(|(c, n)| {
                (
                    cls::name_of(c).to_string(),
                    cls::family_name(c.family),
                    cls::hook_of(c).map_or_else(|| c.hook.to_string(), |h| h.to_string()),
                    cls::match_name(c.matches),
                    PyBytes::new(py, c.prefix()),
                    c.priority,
                    c.ipv4_bits,
                    c.ipv6_bits,
                    (n.packets, n.unkeyed, n.drop, n.accept, n.mark),
                )
            })
            .collect())
    }

    /// Puts `action` (text) for `target` (text) under classifier `name`;
    /// `ttl_ms`, `keep_ttl` as for `put`.
    #[pyo3(signature = (name, target, action, ttl_ms=None, keep_ttl=false))]
    fn add_element(
        &self,
        py: Python<'_>,
        name: &str,
        target: &str,
        action: &str,
        ttl_ms: Option<u32>,
        keep_ttl: bool,
    ) -> PyResult<()> {
        let action = self::action(action)?;
        let (_, t) = self.element_target(py, name, target)?;
        let kv = self.kv()?;
        let ttl = Ttl {
            ms: ttl_ms,
            keep: keep_ttl,
        };
        py.allow_threads(|| kv.add_element_with_ttl(name, &t, action, ttl))
            .map_err(|e| cls_pyerr(py, e, name))
    }

    /// A watch of the changes after `since` (None: the table's generation
    /// now) to keys under `prefix`; `timeout` (seconds, None: never) ends it
    /// when no change came for that long.
    #[pyo3(signature = (prefix, since, values, timeout))]
    fn watch(
        &self,
        py: Python<'_>,
        prefix: &[u8],
        since: Option<u64>,
        values: bool,
        timeout: Option<f64>,
    ) -> PyResult<Watch> {
        let idle_timeout = timeout
            .map(std::time::Duration::try_from_secs_f64)
            .transpose()
            .map_err(|e| PyValueError::new_err(format!("timeout: {e}")))?;
        if prefix.len() > nfkv::MAX_KEY_LEN {
            return Err(PyValueError::new_err(format!(
                "prefix must be at most {} bytes, not {}",
                nfkv::MAX_KEY_LEN,
                prefix.len()
            )));
        }
        let kv = self.kv()?;
        let since = match since {
            Some(s) => s,
            None => py
                .allow_threads(|| kv.current_generation())
                .map_err(|e| to_pyerr(py, e, Context::default()))?,
        };
        let options = WatchOptions {
            prefix: prefix.to_vec(),
            since: Some(since),
            values,
            idle_timeout,
        };
        Ok(Watch {
            watcher: Mutex::new(Watcher::new(kv, options)),
        })
    }

    /// Removes `target`'s entry under classifier `name`.
    fn delete_element(&self, py: Python<'_>, name: &str, target: &str) -> PyResult<()> {
        let (c, t) = self.element_target(py, name, target)?;
        let kv = self.kv()?;
        let key = cls::key_of(&c, &t).map_err(|e| to_pyerr_plain(&e))?;
        py.allow_threads(|| kv.delete(&key, None))
            .map_err(|e| match e {
                // The classifier exists: ENOENT is about the element.
                Error::NotFound => {
                    PyKeyError::new_err(format!("classifier {name} has no element {target}"))
                }
                e => to_pyerr(py, e, Context::default()),
            })
    }

    /// `[(target, action)]` of classifier `name`, as text.
    fn elements(&self, py: Python<'_>, name: &str) -> PyResult<Vec<(String, String)>> {
        let kv = self.kv()?;
        let (c, elements) = py
            .allow_threads(|| {
                let (c, _) = kv.classifier(name)?;
                Ok((c, kv.elements(name)?))
            })
            .map_err(|e| cls_pyerr(py, e, name))?;
        Ok(elements
            .iter()
            .map(|(t, a)| (t.display_with(&c), cls::action_text(a)))
            .collect())
    }
}

/// A change as the Python layer gets it: `(kind, generation, last, key,
/// value)`, kind `"put"`, `"delete"`, `"flush"`, `"expire"` or `"resync"`
/// (then `generation` and `last` are the snapshot's, `key` empty).
type ChangeTuple<'py> = (
    &'static str,
    u64,
    u64,
    Bound<'py, PyBytes>,
    Option<Bound<'py, PyBytes>>,
);

/// A watch of the table's changes (`Connection.watch`), iterated by `next`.
#[pyclass(module = "nfkv._native", frozen)]
struct Watch {
    watcher: Mutex<Watcher<Arc<Nfkv>>>,
}

#[pymethods]
impl Watch {
    /// The next change, waiting for it with the GIL released; None once no
    /// change came within the timeout. A signal during the wait runs the
    /// Python handlers (KeyboardInterrupt for Ctrl-C) and, if none raised,
    /// waits on.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<ChangeTuple<'py>>> {
        loop {
            let item = py.allow_threads(|| {
                self.watcher
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next()
            });
            return Ok(Some(match item {
                None => return Ok(None),
                Some(Err(Error::Interrupted)) => {
                    py.check_signals()?;
                    continue;
                }
                Some(Err(e)) => return Err(to_pyerr(py, e, Context::default())),
                Some(Ok(Watched::Resync { generation, .. })) => (
                    "resync",
                    generation,
                    generation,
                    PyBytes::new(py, b""),
                    None,
                ),
                Some(Ok(Watched::Change(c))) => (
                    c.kind.name(),
                    c.generation,
                    c.last,
                    PyBytes::new(py, &c.key),
                    c.value.map(|v| PyBytes::new(py, &v)),
                ),
            }));
        }
    }

    /// The generation the changes so far bring the watch up to.
    #[getter]
    fn generation(&self) -> Option<u64> {
        self.watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation()
    }
}

/// One record of a batch file: the batch op it is, and its line.
type FileRecord<'py> = (BatchOp<'py>, usize);

/// Reads a batch or save file without applying it: `(encoding, prefix,
/// flush, records, time_ms)`, `prefix` None unless a save header records
/// it, `time_ms` (ms since the Unix epoch) None unless it records when the
/// save was taken.
#[pyfunction]
#[pyo3(signature = (data, encoding=None))]
#[allow(clippy::type_complexity)]
fn read_batch_file<'py>(
    py: Python<'py>,
    data: &[u8],
    encoding: Option<&str>,
) -> PyResult<(
    &'static str,
    Option<Bound<'py, PyBytes>>,
    bool,
    Vec<FileRecord<'py>>,
    Option<u64>,
)> {
    let asked = encoding.map(self::encoding).transpose()?;
    let file = read_file(py, data, asked)?;
    let (enc, prefix) = match &file.header {
        Some(h) => (h.encoding, h.prefix.as_deref()),
        None => (asked.unwrap_or_default(), None),
    };
    let records = file
        .records
        .iter()
        .map(|r| {
            let op = (
                r.kind == Kind::Put,
                PyBytes::new(py, &r.key),
                PyBytes::new(py, &r.value),
                r.cond.create_only,
                r.cond.replace_only,
                r.cond.if_version,
                r.cond.ttl.ms,
                r.cond.ttl.keep,
            );
            (op, r.line)
        })
        .collect();
    let time_ms = file
        .header
        .as_ref()
        .and_then(|h| h.time)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    Ok((
        enc.name(),
        prefix.map(|p| PyBytes::new(py, p)),
        file.flush,
        records,
        time_ms,
    ))
}

/// Opens a connection at `optbase` (None: `$NFKV_OPTBASE`, then sysfs, then
/// the default) and checks the module's ABI version.
#[pyfunction]
#[pyo3(signature = (optbase=None))]
fn connect(py: Python<'_>, optbase: Option<i64>) -> PyResult<Connection> {
    let optbase = match optbase {
        None => None,
        Some(o) if (0..=i64::from(MAX_OPTBASE)).contains(&o) => Some(o as u32),
        Some(o) => {
            return Err(PyValueError::new_err(format!(
                "optbase must be 0..={MAX_OPTBASE}, not {o}"
            )))
        }
    };
    let kv = py
        .allow_threads(|| match optbase {
            Some(o) => Nfkv::open_at(o),
            None => Nfkv::open(),
        })
        .map_err(|e| to_pyerr(py, e, Context::default()))?;
    Ok(Connection {
        kv: Mutex::new(Some(Arc::new(kv))),
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Connection>()?;
    m.add_class::<Watch>()?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(read_batch_file, m)?)?;
    m.add("MAX_KEY_LEN", nfkv::MAX_KEY_LEN)?;
    m.add("SET_COMMAND_NAMES", SET_COMMAND_NAMES)?;
    m.add("GET_COMMAND_NAMES", GET_COMMAND_NAMES)?;
    m.add("DEFAULT_OPTBASE", nfkv::DEFAULT_OPTBASE)?;
    m.add("ABI_VERSION", nfkv::ABI_VERSION)?;
    m.add("MAX_TTL_MS", nfkv::MAX_TTL_MS)?;
    Ok(())
}
