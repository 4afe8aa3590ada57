//! Real Redis processes for tests: a standalone server (with or without AOF), replicas,
//! and Sentinels, each on a free loopback port in its own directory, killed when
//! dropped. Faults are real too: SIGKILL and restart on the same port and data, SIGSTOP
//! and SIGCONT, and killing the pub/sub connections from the server side.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting Redis may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How a test Redis is configured.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `appendonly yes` with this `appendfsync` (`always`, `everysec`, `no`); `None`
    /// runs without persistence at all (no AOF, no RDB snapshots).
    pub aof: Option<&'static str>,
    /// Starts as a replica of the Redis on this port.
    pub replica_of: Option<u16>,
    /// More `--name value` arguments.
    pub extra: Vec<String>,
}

impl RedisOptions {
    /// AOF with `appendfsync always`: every acknowledged write is on disk.
    pub fn durable() -> RedisOptions {
        RedisOptions {
            aof: Some("always"),
            ..RedisOptions::default()
        }
    }
}

/// A redis-server process started by a test.
#[derive(Debug)]
pub struct RedisProc {
    port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
    child: Option<Child>,
}

/// A free loopback port (bound then released; the caller binds it again at once).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `redis-server` can be run here.
pub fn redis_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl RedisProc {
    /// Starts a Redis with `options` and waits until it answers.
    pub fn start(options: RedisOptions) -> io::Result<RedisProc> {
        let mut dir = tempfile::tempdir()?;
        let mut last_error = None;
        // A port found free may be taken before Redis binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let mut redis = RedisProc {
                port,
                dir,
                options: options.clone(),
                child: None,
            };
            match redis.spawn() {
                Ok(()) => return Ok(redis),
                Err(error) => {
                    last_error = Some(error);
                    dir = redis.take_dir()?;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn take_dir(mut self) -> io::Result<tempfile::TempDir> {
        self.kill();
        let fresh = tempfile::tempdir()?;
        Ok(std::mem::replace(&mut self.dir, fresh))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--protected-mode")
            .arg("no");
        match self.options.aof {
            Some(fsync) => {
                command
                    .arg("--appendonly")
                    .arg("yes")
                    .arg("--appendfsync")
                    .arg(fsync);
            }
            None => {
                command.arg("--appendonly").arg("no");
            }
        }
        if let Some(master) = self.options.replica_of {
            command
                .arg("--replicaof")
                .arg("127.0.0.1")
                .arg(master.to_string());
        }
        command.args(&self.options.extra);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited with {status}: {}",
                    self.log_tail()
                )));
            }
            if self.ping().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "redis-server on port {} did not answer within {START_TIMEOUT:?}: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> redis::RedisResult<()> {
        let mut connection = self.connect()?;
        redis::cmd("PING").query::<()>(&mut connection)
    }

    /// A synchronous connection for a test's own commands.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Runs one command and returns its reply.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let mut connection = self.connect()?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut connection)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process ends at once, with what its persistence wrote so far.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and directory (so with its AOF, if it
    /// has one), after a [`RedisProc::kill`].
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        // The port is ours again at once on loopback; retry briefly if not yet.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "redis restart retried");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// SIGSTOP: the process keeps its sockets open and answers nothing.
    #[cfg(unix)]
    pub fn pause(&self) -> io::Result<()> {
        self.signal(rustix::process::Signal::STOP)
    }

    /// SIGCONT after [`RedisProc::pause`].
    #[cfg(unix)]
    pub fn resume(&self) -> io::Result<()> {
        self.signal(rustix::process::Signal::CONT)
    }

    #[cfg(unix)]
    fn signal(&self, signal: rustix::process::Signal) -> io::Result<()> {
        let pid = self
            .pid()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        rustix::process::kill_process(pid, signal).map_err(io::Error::from)
    }

    /// `CLIENT KILL TYPE pubsub`: every subscriber connection is closed by the server.
    pub fn kill_pubsub_clients(&self) -> redis::RedisResult<u64> {
        self.command(&["CLIENT", "KILL", "TYPE", "pubsub"])
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sentinels watching one master, each its own process.
#[derive(Debug)]
pub struct SentinelSet {
    sentinels: Vec<RedisProc>,
    pub master_name: String,
}

impl SentinelSet {
    /// Starts `count` sentinels watching the master on `master_port` under `name`,
    /// with quorum `count / 2 + 1` and short timeouts so that a failover takes seconds.
    pub fn start(name: &str, master_port: u16, count: usize) -> io::Result<SentinelSet> {
        let quorum = count / 2 + 1;
        let mut sentinels = Vec::with_capacity(count);
        for _ in 0..count {
            sentinels.push(Self::start_one(name, master_port, quorum)?);
        }
        Ok(SentinelSet {
            sentinels,
            master_name: name.to_owned(),
        })
    }

    fn start_one(name: &str, master_port: u16, quorum: usize) -> io::Result<RedisProc> {
        let dir = tempfile::tempdir()?;
        let mut last_error = None;
        let mut dir = Some(dir);
        for _ in 0..5 {
            let port = free_port()?;
            let Some(path) = dir.as_ref().map(|d| d.path().join("sentinel.conf")) else {
                break;
            };
            std::fs::write(
                &path,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\n\
                     sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 5000\n\
                     sentinel parallel-syncs {name} 1\n"
                ),
            )?;
            let Some(owned_dir) = dir.take() else { break };
            let mut sentinel = RedisProc {
                port,
                dir: owned_dir,
                options: RedisOptions {
                    aof: None,
                    replica_of: None,
                    extra: Vec::new(),
                },
                child: None,
            };
            match sentinel.spawn_sentinel(&path) {
                Ok(()) => return Ok(sentinel),
                Err(error) => {
                    last_error = Some(error);
                    sentinel.kill();
                    let fresh = tempfile::tempdir()?;
                    dir = Some(std::mem::replace(&mut sentinel.dir, fresh));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis sentinel did not start")))
    }

    /// The URL a node is given: `redis+sentinel://H:P,H:P,H:P/NAME`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.master_name)
    }

    pub fn sentinels(&self) -> &[RedisProc] {
        &self.sentinels
    }

    /// The master's port the first sentinel reports now.
    pub fn master_port(&self) -> redis::RedisResult<u16> {
        let reply: Vec<String> = self.sentinels[0].command(&[
            "SENTINEL",
            "get-master-addr-by-name",
            &self.master_name,
        ])?;
        reply
            .get(1)
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "no master address from sentinel",
                ))
            })
    }

    /// Waits until every sentinel knows `replicas` replicas and `count - 1` other
    /// sentinels, so that a failover can be agreed.
    pub fn wait_settled(&self, replicas: usize, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let others = self.sentinels.len() - 1;
        loop {
            let settled = self.sentinels.iter().all(|sentinel| {
                let replicas_known: redis::RedisResult<Vec<redis::Value>> =
                    sentinel.command(&["SENTINEL", "replicas", &self.master_name]);
                let sentinels_known: redis::RedisResult<Vec<redis::Value>> =
                    sentinel.command(&["SENTINEL", "sentinels", &self.master_name]);
                replicas_known.is_ok_and(|r| r.len() >= replicas)
                    && sentinels_known.is_ok_and(|s| s.len() >= others)
            });
            if settled {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("sentinels did not settle"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl RedisProc {
    fn spawn_sentinel(&mut self, config: &Path) -> io::Result<()> {
        let child = Command::new("redis-server")
            .arg(config)
            .arg("--sentinel")
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }
}
