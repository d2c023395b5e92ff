//! memcached servers for the tests: each started on a free loopback port
//! and stopped (kill + wait) when dropped, and a backend that owns the
//! servers it talks to, so a test's servers live exactly as long as its
//! backends.

#![allow(dead_code, unreachable_pub)]

#[path = "../support_watchdog/mod.rs"]
mod support_watchdog;
use dogpile::backend::{Acquire, Backend, BackendError, BlockingBackend, KeyLimits, Leased, Value, ValueKind};
use dogpile::backends::{MemcachedBackend, MemcachedConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support_watchdog::watchdog;

const INSTALL: &str = "memcached is needed by this test: install it with `apt-get install memcached` \
                       (scripts/test does that when it runs as root), or put `memcached` on PATH";

/// One memcached process on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    /// A directory of the server's own files (SASL database, certificates),
    /// removed with the server.
    dir: Option<std::path::PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port").local_addr().unwrap().port()
}

impl Server {
    /// Starts a server on a free port.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra arguments (`-I 2m`, ...).
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_in(extra, &[], None)
    }

    /// Starts a server with extra arguments and environment variables,
    /// owning `dir` (removed when the server is dropped).
    pub fn start_in(extra: &[&str], env: &[(&str, &str)], dir: Option<std::path::PathBuf>) -> Server {
        let mut s = Server {
            port: free_port(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dir,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &self.port.to_string(), "-U", "0", "-m", "64", "-c", "1024", "-t", "2"]);
        if std::env::var("USER").as_deref() == Ok("root") || is_root() {
            cmd.args(["-u", "root"]);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.extra).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start memcached ({e}). {INSTALL}"),
        };
        watchdog(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("memcached exited at start ({status}) on port {}. {INSTALL}", self.port);
            }
            assert!(Instant::now() < deadline, "memcached did not accept connections on {}", self.addr());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends raw protocol bytes and returns the first reply line(s).
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// The number of items the server holds.
    pub fn item_count(&self) -> u64 {
        let reply = String::from_utf8_lossy(&self.raw(b"stats\r\n")).into_owned();
        reply
            .lines()
            .find_map(|l| l.strip_prefix("STAT curr_items "))
            .and_then(|v| v.trim().parse().ok())
            .expect("curr_items in stats")
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh, empty temporary directory for one server's files.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "dogpile-mc-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A fresh namespace per backend, so that tests sharing a server never meet.
pub fn namespace() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}-{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Settings for `servers`, quick to give up on a dead server in tests.
pub fn config(servers: &[&Server], namespace: &str) -> MemcachedConfig {
    let mut c = MemcachedConfig::default();
    c.servers = servers.iter().map(|s| s.addr()).collect();
    c.namespace = namespace.to_owned();
    c.retry_dead_ms = 300;
    c.io_timeout_ms = 2000;
    c
}

/// A backend that keeps its servers alive (they stop when the last
/// backend holding them is dropped).
#[derive(Debug)]
pub struct Owned {
    pub inner: MemcachedBackend,
    pub servers: Arc<Vec<Server>>,
}

impl Owned {
    pub fn on(servers: &Arc<Vec<Server>>, config: &MemcachedConfig) -> Arc<dyn Backend> {
        Arc::new(Owned { inner: config.backend().expect("backend"), servers: servers.clone() })
    }
}

/// A backend on one fresh server of its own.
pub fn single() -> Arc<dyn Backend> {
    let servers = Arc::new(vec![Server::start()]);
    let c = config(&[&servers[0]], &namespace());
    Owned::on(&servers, &c)
}

/// A backend on a pool of three fresh servers.
pub fn pool3() -> Arc<dyn Backend> {
    let servers = Arc::new(vec![Server::start(), Server::start(), Server::start()]);
    let c = config(&servers.iter().collect::<Vec<_>>(), &namespace());
    Owned::on(&servers, &c)
}

/// Two backends ("processes") on one server, each with its own namespace
/// shared by both.
pub fn pair_on(servers: Arc<Vec<Server>>) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
    let ns = namespace();
    let c = config(&servers.iter().collect::<Vec<_>>(), &ns);
    (Owned::on(&servers, &c), Owned::on(&servers, &c))
}

impl Backend for Owned {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn value_kind(&self) -> ValueKind {
        self.inner.value_kind()
    }
    fn blocking(&self) -> Option<&dyn BlockingBackend> {
        Some(self)
    }
    fn issues_leases(&self) -> bool {
        self.inner.issues_leases()
    }
    fn shares_invalidation(&self) -> bool {
        self.inner.shares_invalidation()
    }
    fn key_limits(&self) -> Option<KeyLimits> {
        self.inner.key_limits()
    }
}

impl BlockingBackend for Owned {
    fn get(&self, key: &str) -> Result<Option<Value>, BackendError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: Value, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.inner.set(key, value, ttl)
    }
    fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key)
    }
    fn get_multi(&self, keys: &[&str]) -> Result<Vec<Option<Value>>, BackendError> {
        self.inner.get_multi(keys)
    }
    fn set_multi(&self, items: Vec<(&str, Value)>, ttl: Option<Duration>) -> Result<(), BackendError> {
        self.inner.set_multi(items, ttl)
    }
    fn delete_multi(&self, keys: &[&str]) -> Result<(), BackendError> {
        self.inner.delete_multi(keys)
    }
    fn try_lease(&self, key: &str, ttl: Duration) -> Result<Acquire, BackendError> {
        self.inner.try_lease(key, ttl)
    }
    fn read_and_lease(&self, key: &str, ttl: Duration) -> Result<Leased, BackendError> {
        self.inner.read_and_lease(key, ttl)
    }
    fn load_invalidation(&self, region: &str) -> Result<Option<u64>, BackendError> {
        self.inner.load_invalidation(region)
    }
    fn store_invalidation(&self, region: &str, word: u64) -> Result<(), BackendError> {
        self.inner.store_invalidation(region, word)
    }
}

const SASL_INSTALL: &str = "SASL tests need saslpasswd2 and the PLAIN mechanism: install them with \
                            `apt-get install sasl2-bin libsasl2-modules` (scripts/test does that when it runs as root)";

/// `saslpasswd2`, on PATH or where Debian puts it.
fn saslpasswd2() -> String {
    let on_path = Command::new("saslpasswd2").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok() {
        return "saslpasswd2".into();
    }
    let sbin = "/usr/sbin/saslpasswd2";
    assert!(std::path::Path::new(sbin).exists(), "no saslpasswd2 on PATH nor at {sbin}. {SASL_INSTALL}");
    sbin.into()
}

/// A directory holding a SASL database with `user`/`password` and the
/// `memcached.conf` that points memcached at it (PLAIN only): the value of
/// `SASL_CONF_PATH` for a server started with `-S`.
pub fn sasl_dir(user: &str, password: &str) -> std::path::PathBuf {
    // /usr/lib/<multiarch>/sasl2 on Debian, /usr/lib/sasl2 elsewhere.
    let plain = std::path::Path::new("/usr/lib/sasl2/libplain.so").exists()
        || std::fs::read_dir("/usr/lib")
            .map(|d| d.flatten().any(|e| e.path().join("sasl2/libplain.so").exists()))
            .unwrap_or(false);
    assert!(plain, "no SASL PLAIN module (libplain.so). {SASL_INSTALL}");
    let dir = temp_dir("sasl");
    let db = dir.join("sasldb2");
    let mut child = Command::new(saslpasswd2())
        .args(["-a", "memcached", "-c", "-p", "-f", db.to_str().unwrap(), user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run saslpasswd2 ({e}). {SASL_INSTALL}"));
    child.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "saslpasswd2 failed: {}. {SASL_INSTALL}", String::from_utf8_lossy(&out.stderr));
    // memcached reads `<SASL_CONF_PATH>/memcached.conf` (else
    // /etc/sasl/memcached.conf).
    std::fs::write(dir.join("memcached.conf"), format!("mech_list: plain\nsasldb_path: {}\n", db.display())).unwrap();
    dir
}

/// A server speaking only the binary protocol with SASL required, knowing
/// `user`/`password`; `extra` arguments (TLS) added.
pub fn sasl_server(user: &str, password: &str, extra: &[&str]) -> Server {
    let dir = sasl_dir(user, password);
    let mut args = vec!["-S", "-B", "binary"];
    args.extend_from_slice(extra);
    let conf = dir.to_str().unwrap().to_owned();
    Server::start_in(&args, &[("SASL_CONF_PATH", &conf)], Some(dir))
}
