//! Redis servers for the Redis backend's tests: each started by the test on
//! a free loopback port, stopped when dropped (and by a watchdog if the
//! test process dies first). Never the Redis on 6379.

#![allow(dead_code, unreachable_pub)]

#[path = "../support_watchdog/mod.rs"]
mod support_watchdog;
use dogpile::backend::Backend;
use dogpile::backends::RedisBackend;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support_watchdog::watchdog;

/// The environment variable telling a child test process the server's URL.
pub const URL_ENV: &str = "DOGPILE_TEST_REDIS_URL";

/// The redis-server binary, or a failure saying how to install it.
pub fn binary(name: &str) -> PathBuf {
    let candidates = [PathBuf::from(format!("/usr/bin/{name}")), PathBuf::from(format!("/usr/local/bin/{name}"))];
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return found.clone();
    }
    match Command::new(name).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => PathBuf::from(name),
        _ => panic!(
            "`{name}` was not found: the Redis backend's tests start their own Redis servers. \
             Install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`)"
        ),
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// A `redis-server` process.
#[derive(Debug)]
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
    /// A configuration file's text, written before each start and given
    /// first on the command line (Sentinel needs one it can rewrite).
    conf: Option<String>,
    /// Whether `port` is a TLS port (`--tls-port`, no plain port).
    tls: bool,
}

fn scratch_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dogpile-redis-test-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory for redis-server");
    dir
}

impl RedisServer {
    /// A server on a free port, with no persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra arguments (`--replicaof`, `--cluster-enabled`...).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_conf(extra, None)
    }

    /// A Sentinel watching the master on `master_port` as `mymaster`.
    pub fn start_sentinel(master_port: u16) -> Self {
        let conf = format!(
            "sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n"
        );
        Self::start_conf(&["--sentinel"], Some(conf))
    }

    /// A server that speaks TLS only, on `port` (`--port 0 --tls-port`);
    /// `extra` gives its certificates (`--tls-cert-file`...).
    pub fn start_tls(extra: &[&str]) -> Self {
        Self::start_any(extra, None, true)
    }

    fn start_conf(extra: &[&str], conf: Option<String>) -> Self {
        Self::start_any(extra, conf, false)
    }

    fn start_any(extra: &[&str], conf: Option<String>, tls: bool) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                child: None,
                dir: scratch_dir(port),
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                conf: conf.clone(),
                tls,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("could not start redis-server: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(binary("redis-server"));
        if let Some(conf) = &self.conf {
            let path = self.dir.join("redis.conf");
            std::fs::write(&path, conf).map_err(|e| format!("writing {}: {e}", path.display()))?;
            cmd.arg(path);
        }
        let port = self.port.to_string();
        if self.tls {
            cmd.args(["--port", "0", "--tls-port", &port]);
        } else {
            cmd.args(["--port", &port]);
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        watchdog(child.id());
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A TLS port is not PINGed in plain text: listening is enough.
            let up = if self.tls { listening(self.port) } else { ping(self.port) };
            if up {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                return Err(format!("redis-server exited at start ({status}), port {}", self.port));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("redis-server did not answer on port {} within 10 s", self.port));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its port still accepts connections
    /// (the kernel completes them), but nothing is answered, as a hung
    /// server or one behind a stalled network.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running redis-server").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("`kill` runs");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("could not restart redis-server: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(binary("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            // The test checks nothing of the certificates here.
            .args(if self.tls { &["--tls", "--insecure"][..] } else { &[] })
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A backend on this server with a fresh key prefix.
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(backend_at(&self.url(), &fresh_prefix()))
    }

    /// Two backends (two "processes") on one fresh prefix.
    pub fn pair(&self) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
        let prefix = fresh_prefix();
        (Arc::new(backend_at(&self.url(), &prefix)), Arc::new(backend_at(&self.url(), &prefix)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One master, one replica and one Sentinel watching them (`mymaster`).
#[derive(Debug)]
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

impl SentinelSetup {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let sentinel = RedisServer::start_sentinel(master.port);
        let setup = SentinelSetup { master, replica, sentinel };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !setup.replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the replica never synced with the master");
            std::thread::sleep(Duration::from_millis(20));
        }
        let addr = setup.sentinel.cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        assert!(addr.contains(&setup.master.port.to_string()), "the Sentinel knows the master: {addr:?}");
        setup
    }

    /// A backend through the Sentinel, with a fresh key prefix.
    pub fn backend_with(&self, prefix: &str) -> RedisBackend {
        RedisBackend::sentinel(&[&self.sentinel.url()], "mymaster")
            .key_prefix(prefix)
            .connect_timeout(Duration::from_millis(500))
            .io_timeout(Duration::from_secs(2))
            .build()
            .expect("valid Sentinel settings")
    }

    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.backend_with(&fresh_prefix()))
    }

    pub fn pair(&self) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
        let prefix = fresh_prefix();
        (Arc::new(self.backend_with(&prefix)), Arc::new(self.backend_with(&prefix)))
    }
}

/// The Sentinel setup the tests of this binary share.
pub fn shared_sentinel() -> &'static SentinelSetup {
    static SETUP: OnceLock<SentinelSetup> = OnceLock::new();
    SETUP.get_or_init(SentinelSetup::start)
}

/// A Redis Cluster of 3 masters (no replicas), built with
/// `redis-cli --cluster create`.
#[derive(Debug)]
pub struct ClusterSetup {
    pub nodes: Vec<RedisServer>,
}

impl ClusterSetup {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(binary("redis-cli"))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        ClusterSetup { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn backend_with(&self, prefix: &str) -> RedisBackend {
        let urls = self.urls();
        RedisBackend::cluster(&urls.iter().map(String::as_str).collect::<Vec<_>>())
            .key_prefix(prefix)
            .connect_timeout(Duration::from_millis(500))
            .io_timeout(Duration::from_secs(2))
            .build()
            .expect("valid Cluster settings")
    }

    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.backend_with(&fresh_prefix()))
    }

    pub fn pair(&self) -> (Arc<dyn Backend>, Arc<dyn Backend>) {
        let prefix = fresh_prefix();
        (Arc::new(self.backend_with(&prefix)), Arc::new(self.backend_with(&prefix)))
    }
}

/// The Cluster the tests of this binary share.
pub fn shared_cluster() -> &'static ClusterSetup {
    static SETUP: OnceLock<ClusterSetup> = OnceLock::new();
    SETUP.get_or_init(ClusterSetup::start)
}

/// A backend at `url` with `prefix` and short timeouts.
pub fn backend_at(url: &str, prefix: &str) -> RedisBackend {
    RedisBackend::builder(url)
        .key_prefix(prefix)
        .connect_timeout(Duration::from_millis(500))
        .io_timeout(Duration::from_secs(2))
        .build()
        .expect("a valid URL")
}

/// A key prefix no other test of this run uses.
pub fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}-{}:", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The server the tests of this binary share (each with its own prefix);
/// its watchdog stops it when the test process exits.
pub fn shared() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// Whether something listens on `port`.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Whether a server answers PING on `port`.
pub fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A raw connection to `url`, for reading and writing keys behind the
/// backend's back.
pub fn raw(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("a valid URL");
    let con = client.get_connection_with_timeout(Duration::from_secs(2)).expect("the test server answers");
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con
}

/// The Redis keys matching `pattern` (`KEYS`: test servers are small).
pub fn keys(con: &mut redis::Connection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS").arg(pattern).query(con).expect("KEYS")
}
