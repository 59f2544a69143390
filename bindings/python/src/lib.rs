//! `tokengate._tokengate`: the root crate's pipeline behind a Python API
//! (issue #23). The Python package around it (`python/tokengate/`) adds the
//! error classes, the type stubs and the framework adapters.
//!
//! Every decision runs in tokengate's own tokio runtime (the one
//! `pyo3-async-runtimes` is given): `Gate.authenticate` decides on the calling
//! thread when it can without waiting (a key set in hand, a cached token) and
//! hands the asyncio loop a Future already done; a decision that waits (a key
//! fetch, an introspection call) goes on on the runtime's threads, and its
//! Future completes when they have decided, so the loop is never held;
//! `Gate.authenticate_sync`
//! blocks its own thread on the runtime with the GIL released, so the other
//! threads of a WSGI server keep running Python meanwhile.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PyString, PyTuple};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokengate::http::admission::RequestParts;
use tokengate::http::credential::canonical_route;
use tokengate::http::gate::Gate as CoreGate;
use tokengate::http::rejection::Rejection;
use tokengate::{AuthError, Config, ConfigError, Format, Principal as CorePrincipal, Reason, Registry};

/// The runtime every decision runs on; made on first use, so a process that
/// imports tokengate and then forks (a pre-fork server) starts its threads in
/// the child.
fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME_PROCESS.get_or_init(std::process::id);
    pyo3_async_runtimes::tokio::get_runtime()
}

/// The process the runtime was made in. A fork copies the runtime but not its threads: in
/// the child, a spawned task would never run and a lock a runtime thread held at the fork
/// would never be released, so the child is refused rather than left to hang.
static RUNTIME_PROCESS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

fn refuse_after_fork() -> PyResult<()> {
    match RUNTIME_PROCESS.get() {
        Some(&made_in) if made_in != std::process::id() => Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "tokengate's runtime was started in process {made_in}, before this process forked from it, \
             and its threads did not survive the fork: build every Gate in the worker process \
             (e.g. gunicorn's post_fork hook or the app's startup), never before forking (--preload)"
        ))),
        _ => Ok(()),
    }
}

fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // A decision is mostly CPU (a signature) or waiting on the network: a few
    // threads beside Python's own are plenty, and one per core is what tokio would take.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    builder.worker_threads(threads).thread_name("tokengate").enable_all();
    builder
}

/// Who a request is authenticated as.
///
/// Also what Starlette's `request.user` expects (`is_authenticated`,
/// `display_name`, `identity`), so the ASGI middleware can put it in `scope["user"]`.
#[pyclass(frozen, module = "tokengate", name = "Principal")]
#[derive(Clone)]
struct PyPrincipal {
    inner: CorePrincipal,
}

#[pymethods]
impl PyPrincipal {
    #[new]
    #[pyo3(signature = (principal, attributes=None, tenant=None, unknown_attributes=None))]
    fn new(
        principal: String,
        attributes: Option<BTreeMap<String, Vec<String>>>,
        tenant: Option<String>,
        unknown_attributes: Option<BTreeSet<String>>,
    ) -> Self {
        let mut inner = CorePrincipal::new(principal);
        inner.attributes = attributes.unwrap_or_default();
        inner.tenant = tenant;
        inner.unknown_attributes = unknown_attributes.unwrap_or_default();
        PyPrincipal { inner }
    }

    /// The identifier.
    #[getter]
    fn principal(&self) -> &str {
        &self.inner.principal
    }

    /// Attribute name to values (a fresh dict each time: the principal is immutable).
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, values) in &self.inner.attributes {
            dict.set_item(name, PyList::new(py, values)?)?;
        }
        Ok(dict)
    }

    #[getter]
    fn tenant(&self) -> Option<&str> {
        self.inner.tenant.as_deref()
    }

    /// The attributes the provider could not determine: neither present nor empty.
    #[getter]
    fn unknown_attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, &self.inner.unknown_attributes)
    }

    /// The API key's id, for a principal an `api_key` provider admitted.
    #[getter]
    fn key_id(&self) -> Option<&str> {
        self.inner.credential.as_ref().map(|c| c.key_id.as_str())
    }

    #[getter]
    fn is_authenticated(&self) -> bool {
        true
    }

    #[getter]
    fn display_name(&self) -> &str {
        &self.inner.principal
    }

    #[getter]
    fn identity(&self) -> &str {
        &self.inner.principal
    }

    /// The values of `name`, empty when it has none; `KeyError` when it is unknown,
    /// which is not the same as having none.
    fn values(&self, name: &str) -> PyResult<Vec<String>> {
        if self.inner.unknown_attributes.contains(name) {
            return Err(pyo3::exceptions::PyKeyError::new_err(format!(
                "attribute {name:?} could not be determined for this principal"
            )));
        }
        Ok(self.inner.attributes.get(name).cloned().unwrap_or_default())
    }

    /// The principal as `tokengate serve` sends it in its answer's body.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("principal", &self.inner.principal)?;
        dict.set_item("attributes", self.attributes(py)?)?;
        if !self.inner.unknown_attributes.is_empty() {
            dict.set_item("unknown_attributes", PyList::new(py, &self.inner.unknown_attributes)?)?;
        }
        if let Some(tenant) = &self.inner.tenant {
            dict.set_item("tenant", tenant)?;
        }
        Ok(dict)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyPrincipal>().is_ok_and(|o| {
            let o = &o.get().inner;
            (&o.principal, &o.attributes, &o.unknown_attributes, &o.tenant)
                == (&self.inner.principal, &self.inner.attributes, &self.inner.unknown_attributes, &self.inner.tenant)
        })
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.inner.principal, &self.inner.attributes, &self.inner.unknown_attributes, &self.inner.tenant)
            .hash(&mut hasher);
        hasher.finish()
    }

    fn __repr__(&self) -> String {
        let p = &self.inner;
        format!(
            "Principal(principal={:?}, attributes={:?}, tenant={:?}, unknown_attributes={:?})",
            p.principal, p.attributes, p.tenant, p.unknown_attributes
        )
    }
}

/// tokengate in front of a Python application: a configuration's pipeline,
/// realm, open paths and audit log.
#[pyclass(frozen, module = "tokengate", name = "Gate")]
struct PyGate {
    gate: CoreGate,
}

#[pymethods]
impl PyGate {
    /// Reads a config file (YAML, JSON by `.json`, TOML by `.toml`; an OGX
    /// run.yaml is read for its `server.auth`). Relative paths in it resolve
    /// against the file's directory.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let config = py.detach(|| Config::load(&path)).map_err(|e| config_error(py, &e))?;
        Self::build(py, config)
    }

    /// Parses YAML config text (a run.yaml's too).
    #[staticmethod]
    fn from_yaml(py: Python<'_>, text: &str) -> PyResult<Self> {
        let config = Config::parse(text, Format::Yaml).map_err(|e| config_error(py, &e))?;
        Self::build(py, config)
    }

    /// Takes the config as a dict, as `yaml.safe_load` or `json.load` gives it.
    #[staticmethod]
    fn from_dict(py: Python<'_>, config: &Bound<'_, PyDict>) -> PyResult<Self> {
        // Through JSON text: its parser is the one that refuses a key written twice, and a
        // value JSON cannot hold (a set, a date) is a TypeError naming it.
        let text: String = py.import("json")?.call_method1("dumps", (config,))?.extract()?;
        let config = Config::parse(&text, Format::Json).map_err(|e| config_error(py, &e))?;
        Self::build(py, config)
    }

    /// The `realm` of `WWW-Authenticate`.
    #[getter]
    fn realm(&self) -> &str {
        self.gate.realm()
    }

    /// Whether `path` is answered without authentication (an open path).
    fn is_open(&self, path: &str) -> bool {
        canonical_route(path).is_ok_and(|p| self.gate.is_open(&p))
    }

    /// Decides on a request; an awaitable of the principal, or `None` where
    /// the request is let in without one (an open path without a valid token,
    /// or a configuration without a provider whose route policy lets it in).
    /// Raises `AuthError` for a refusal.
    #[pyo3(signature = (headers, method="GET", path="/", query=None, client_ip=None))]
    fn authenticate<'py>(
        &self,
        py: Python<'py>,
        headers: &Bound<'py, PyAny>,
        method: &str,
        path: &str,
        query: Option<&str>,
        client_ip: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        refuse_after_fork()?;
        let request = self.request(headers, method, path, query, client_ip)?;
        let gate = self.gate.clone();
        let mut deciding: PendingDecision = Box::pin(async move { decide(&gate, request).await });
        // One poll here first: with the key set in hand or the token in the verified-token
        // cache (the usual request), the decision is made on this thread and the loop gets a
        // Future already done, sparing it the ~80 µs hand-off to the runtime's threads and
        // back. The GIL is released meanwhile, as a signature check takes tens of µs.
        // Only a decision that waits (a key fetch, a remote call) goes to the runtime: the
        // same future, which carries on where this poll left it.
        let polled = py.detach(|| {
            let _entered = runtime().enter();
            deciding.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        });
        match polled {
            Poll::Ready(outcome) => done_future(py, outcome),
            Poll::Pending => pyo3_async_runtimes::tokio::future_into_py(py, async move {
                let outcome = deciding.await;
                Python::attach(|py| into_python(py, outcome))
            }),
        }
    }

    /// [`authenticate`], waiting on this thread with the GIL released (for WSGI apps).
    #[pyo3(signature = (headers, method="GET", path="/", query=None, client_ip=None))]
    fn authenticate_sync(
        &self,
        py: Python<'_>,
        headers: &Bound<'_, PyAny>,
        method: &str,
        path: &str,
        query: Option<&str>,
        client_ip: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        refuse_after_fork()?;
        let request = self.request(headers, method, path, query, client_ip)?;
        let gate = self.gate.clone();
        let outcome = py.detach(|| runtime().block_on(decide(&gate, request)));
        into_python(py, outcome)
    }

    /// The 403 `insufficient_scope` refusal of `principal`, worded and shaped as
    /// tokengate's own, for a framework adapter's scope check.
    fn insufficient_scope(&self, py: Python<'_>, principal: &PyPrincipal, detail: String) -> PyErr {
        let error = AuthError::insufficient_scope(detail).because(Reason::Policy);
        auth_error(py, &self.gate.reject_principal(error, Some(&principal.inner)))
    }

    /// The 401 for a request without credentials, for an adapter that needs a principal
    /// where the gate let the request in without one (an open path).
    fn missing_credential(&self, py: Python<'_>) -> PyErr {
        auth_error(py, &self.gate.reject_missing())
    }

    /// For `bench/bench.py` only: decides on each token, sent as `Authorization: Bearer`,
    /// through the same front door from Rust, with no Python between decisions, all on this
    /// thread in one `block_on` (as the Rust benches run). Answers the seconds the decisions
    /// took (the headers are built before the clock starts) and how many were admitted: the
    /// Rust cost that the binding's own is measured against.
    #[pyo3(signature = (tokens, path="/"))]
    fn _admit_in_rust(&self, py: Python<'_>, tokens: Vec<String>, path: &str) -> PyResult<(f64, usize)> {
        refuse_after_fork()?;
        let mut requests = Vec::with_capacity(tokens.len());
        for token in &tokens {
            let mut headers = HeaderMap::new();
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| PyValueError::new_err("a token is not a header value"))?;
            headers.insert(http::header::AUTHORIZATION, value);
            requests.push(headers);
        }
        let gate = self.gate.clone();
        Ok(py.detach(|| {
            runtime().block_on(async {
                let started = std::time::Instant::now();
                let mut admitted = 0;
                for headers in &requests {
                    let parts = RequestParts { method: "GET", path, query: None, headers, peer: None };
                    if let Ok(Some(_)) = gate.admit(&parts).await.into_result() {
                        admitted += 1;
                    }
                }
                (started.elapsed().as_secs_f64(), admitted)
            })
        }))
    }

    fn __repr__(&self) -> String {
        format!("Gate(pipeline={:?}, realm={:?})", self.gate.pipeline().name(), self.gate.realm())
    }
}

impl PyGate {
    fn build(py: Python<'_>, config: Config) -> PyResult<Self> {
        refuse_after_fork()?;
        // Providers start their background work (key-set refreshes) on the runtime they are built in.
        let built = py.detach(|| {
            let _entered = runtime().enter();
            CoreGate::from_config(&config, &Registry::with_builtins())
        });
        Ok(PyGate { gate: built.map_err(|e| config_error(py, &e))? })
    }

    /// What Python hands in, read while the GIL is held.
    fn request(
        &self,
        headers: &Bound<'_, PyAny>,
        method: &str,
        path: &str,
        query: Option<&str>,
        client_ip: Option<&str>,
    ) -> PyResult<Request> {
        let client_ip = match client_ip {
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| PyValueError::new_err(format!("client_ip {ip:?} is not an IP address")))?,
            ),
            None => None,
        };
        // A request target's query follows its first `?`; `query=` says it apart.
        let (path, query) = match (path.split_once('?'), query) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err("the path has a query and query= is given too: pass one"));
            }
            (Some((path, in_path)), None) => (path.to_string(), Some(in_path.to_string())),
            (None, query) => (path.to_string(), query.map(str::to_string)),
        };
        Ok(Request { headers: header_map(headers)?, method: method.to_string(), path, query, client_ip })
    }
}

struct Request {
    /// Headers that are no HTTP headers: refused as the layer's server would have.
    headers: Result<HeaderMap, String>,
    method: String,
    path: String,
    query: Option<String>,
    client_ip: Option<IpAddr>,
}

/// The one front door every front end shares ([`Gate::admit`], src/http/admission.rs), for a
/// request described by Python.
async fn decide(gate: &CoreGate, request: Request) -> Result<Option<CorePrincipal>, Box<Rejection>> {
    let headers = request
        .headers
        .map_err(|detail| gate.reject(AuthError::invalid_request(detail).because(Reason::Request)))
        .map_err(Box::new)?;
    // The server knows the client's address; providers and limits read only the address.
    let peer = request.client_ip.map(|ip| SocketAddr::new(ip, 0));
    let parts = RequestParts {
        method: &request.method,
        path: &request.path,
        query: request.query.as_deref(),
        headers: &headers,
        peer,
    };
    // Boxed: a refusal is large, and it is carried through the poll and the runtime's task.
    gate.admit(&parts).await.into_result().map_err(Box::new)
}

/// A decision that [`PyGate::authenticate`] polled once; `Send`, as it may finish on the runtime.
type PendingDecision = Pin<Box<dyn Future<Output = Result<Option<CorePrincipal>, Box<Rejection>>> + Send>>;

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// An asyncio Future of the running loop holding `outcome`: the same kind of awaitable as a
/// decision the runtime finishes, so `await`, `asyncio.gather`, `asyncio.wait_for`,
/// `ensure_future` and `add_done_callback` treat both alike.
fn done_future<'py>(
    py: Python<'py>,
    outcome: Result<Option<CorePrincipal>, Box<Rejection>>,
) -> PyResult<Bound<'py, PyAny>> {
    let event_loop = GET_RUNNING_LOOP.import(py, "asyncio", "get_running_loop")?.call0()?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    match into_python(py, outcome) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
        Err(error) => future.call_method1(intern!(py, "set_exception"), (error.into_value(py),))?,
    };
    Ok(future)
}

fn into_python(py: Python<'_>, outcome: Result<Option<CorePrincipal>, Box<Rejection>>) -> PyResult<Py<PyAny>> {
    match outcome {
        Ok(Some(inner)) => Ok(Py::new(py, PyPrincipal { inner })?.into_any()),
        Ok(None) => Ok(py.None()),
        Err(rejection) => Err(auth_error(py, &rejection)),
    }
}

/// Every copy of every header, from a mapping (`dict`, Starlette's `Headers`,
/// Werkzeug's `EnvironHeaders`) or an iterable of `(name, value)` pairs (an
/// ASGI scope's `headers`), each `str` (read as Latin-1, as WSGI and ASGI
/// servers decode) or `bytes`.
fn header_map(headers: &Bound<'_, PyAny>) -> PyResult<Result<HeaderMap, String>> {
    let mut map = HeaderMap::new();
    // A plain dict (the usual argument) and a list of pairs are read without a method call;
    // `getattr` is tried only on other types, as a failed lookup costs an exception.
    if let Ok(dict) = headers.cast::<PyDict>() {
        for (name, value) in dict.iter() {
            if let Err(refusal) = add_header(&mut map, &name, &value)? {
                return Ok(Err(refusal));
            }
        }
        return Ok(Ok(map));
    }
    let pairs = if headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>() {
        headers.clone()
    } else if let Some(raw) = headers.getattr_opt("raw")?.and_then(|raw| raw.cast_into::<PyList>().ok()) {
        raw.into_any()
    } else if headers.hasattr("items")? {
        headers.call_method0("items")?
    } else {
        headers.clone()
    };
    for pair in pairs.try_iter()? {
        let pair = pair?;
        let pair = pair
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err("headers: each item must be a (name, value) pair"))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err("headers: each item must be a (name, value) pair"));
        }
        if let Err(refusal) = add_header(&mut map, &pair.get_item(0)?, &pair.get_item(1)?)? {
            return Ok(Err(refusal));
        }
    }
    Ok(Ok(map))
}

/// Appends one header; `Ok(Err(why))` for one no HTTP server would have passed on.
fn add_header(map: &mut HeaderMap, name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Result<(), String>> {
    let (name, value) = match (header_bytes(name)?, header_bytes(value)?) {
        (Some(name), Some(value)) => (name, value),
        _ => return Ok(Err("a header has characters outside Latin-1".to_string())),
    };
    let Ok(name) = HeaderName::from_bytes(&name) else {
        return Ok(Err("a header name is not an HTTP token".to_string()));
    };
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return Ok(Err("a header value has control characters".to_string()));
    };
    map.append(name, value);
    Ok(Ok(()))
}

/// The bytes of a header name or value; `None` for text that has no Latin-1 reading.
fn header_bytes<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<Option<std::borrow::Cow<'a, [u8]>>> {
    if let Ok(bytes) = item.cast::<PyBytes>() {
        return Ok(Some(std::borrow::Cow::Borrowed(bytes.as_bytes())));
    }
    let text =
        item.cast::<PyString>().map_err(|_| PyTypeError::new_err("headers: names and values must be str or bytes"))?;
    let text = text.to_cow()?;
    if text.is_ascii() {
        return Ok(Some(match text {
            std::borrow::Cow::Borrowed(ascii) => std::borrow::Cow::Borrowed(ascii.as_bytes()),
            std::borrow::Cow::Owned(ascii) => std::borrow::Cow::Owned(ascii.into_bytes()),
        }));
    }
    Ok(text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect::<Option<Vec<u8>>>().map(std::borrow::Cow::Owned))
}

static AUTH_ERROR: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
static CONFIG_ERROR: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();

/// `tokengate.AuthError` for `rejection`: what `tokengate serve` and the layer answer with.
fn auth_error(py: Python<'_>, rejection: &Rejection) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let class = AUTH_ERROR.import(py, "tokengate._errors", "AuthError")?;
        let headers: Vec<(String, String)> = rejection
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let instance = class.call1((
            rejection.status().as_u16(),
            rejection.code(),
            rejection.client_message(),
            rejection.reason().to_string(),
            rejection.www_authenticate(),
            headers,
            PyBytes::new(py, &rejection.body()),
        ))?;
        Ok(PyErr::from_value(instance))
    };
    make().unwrap_or_else(|e| e)
}

fn config_error(py: Python<'_>, error: &ConfigError) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let class = CONFIG_ERROR.import(py, "tokengate._errors", "ConfigError")?;
        Ok(PyErr::from_value(class.call1((error.to_string(),))?))
    };
    make().unwrap_or_else(|e| e)
}

#[pymodule]
fn _tokengate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    pyo3_async_runtimes::tokio::init(runtime_builder());
    m.add_class::<PyGate>()?;
    m.add_class::<PyPrincipal>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
