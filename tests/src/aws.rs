//! Real AWS parts for the end-to-end suites: a `moto_server` (the AWS emulator from PyPI), a
//! fault-injecting TCP proxy in front of it that counts the AWS operations the agent sends, and
//! boto3 to create and change secrets the way users do.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// Static credentials for the emulator; nothing here ever reaches AWS.
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// A `moto_server` on a free loopback port, killed on drop. One per test: state never leaks
/// between tests, and tests run in parallel.
pub struct Moto {
    pub port: u16,
    child: Child,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; .ci/run does)");
        let moto = Moto { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read(&mut buf).is_ok_and(|n| n > 0) {
                    return moto;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start on port {port}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears all emulator state.
    pub fn reset(&self) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(b"POST /moto-api/reset HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
            "{out}"
        );
    }

    /// Runs a Python script with `ssm`, `sm`, `kms`, `s3`, `sqs`, `sns` and `events` (EventBridge)
    /// boto3 clients bound to this emulator and returns its stdout.
    pub fn boto3(&self, script: &str) -> String {
        let prelude = format!(
            "import boto3, json, sys\n\
             kw = dict(endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             ssm = boto3.client('ssm', **kw)\n\
             sm = boto3.client('secretsmanager', **kw)\n\
             kms = boto3.client('kms', **kw)\n\
             s3 = boto3.client('s3', **kw)\n\
             sqs = boto3.client('sqs', **kw)\n\
             sns = boto3.client('sns', **kw)\n\
             events = boto3.client('events', **kw)\n",
            self.endpoint()
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .output()
            .expect("python3 with boto3");
        assert!(
            out.status.success(),
            "boto3 script failed:\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward everything.
    Pass = 0,
    /// Close every connection at once (connection refused/reset to the agent).
    Reset = 1,
    /// Accept and read, never answer (a black hole: the agent times out).
    Blackhole = 2,
}

/// A TCP proxy in front of moto that can fail on demand and records the AWS operations
/// (`X-Amz-Target` headers, or the `Action` of a query-protocol body) that pass through it.
pub struct FaultProxy {
    pub port: u16,
    fault: Arc<AtomicU8>,
    operations: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(AtomicU8::new(Fault::Pass as u8));
        let operations = Arc::new(Mutex::new(Vec::new()));
        let (f, ops) = (Arc::clone(&fault), Arc::clone(&operations));
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (f, ops) = (Arc::clone(&f), Arc::clone(&ops));
                thread::spawn(move || relay(client, upstream, f, ops));
            }
        });
        FaultProxy {
            port,
            fault,
            operations,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::SeqCst);
    }

    /// How many requests of this operation (e.g. `AmazonSSM.GetParameter`) went through.
    pub fn count(&self, operation: &str) -> usize {
        self.operations
            .lock()
            .unwrap()
            .iter()
            .filter(|o| *o == operation)
            .count()
    }

    pub fn total(&self) -> usize {
        self.operations.lock().unwrap().len()
    }

    pub fn operations(&self) -> Vec<String> {
        self.operations.lock().unwrap().clone()
    }
}

fn relay(
    client: TcpStream,
    upstream: u16,
    fault: Arc<AtomicU8>,
    operations: Arc<Mutex<Vec<String>>>,
) {
    let current = || fault.load(Ordering::SeqCst);
    if current() == Fault::Reset as u8 {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = server.set_read_timeout(Some(Duration::from_millis(100)));
    let (mut c_read, mut c_write) = (client.try_clone().unwrap(), client);
    let (mut s_read, mut s_write) = (server.try_clone().unwrap(), server);
    let fault_back = Arc::clone(&fault);
    // Upstream → client.
    let back = thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match fault_back.load(Ordering::SeqCst) {
                f if f == Fault::Reset as u8 => break,
                f if f == Fault::Blackhole as u8 => {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
                _ => {}
            }
            match s_read.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if is_timeout(&e) => continue,
                Err(_) => break,
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
    });
    // Client → upstream, noting the operation of each request.
    let mut buf = [0u8; 16 * 1024];
    let mut carry = String::new();
    loop {
        if current() == Fault::Reset as u8 {
            break;
        }
        match c_read.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                carry.push_str(&String::from_utf8_lossy(&buf[..n]));
                record_operations(&mut carry, &operations);
                if current() == Fault::Blackhole as u8 {
                    continue;
                }
                if s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if is_timeout(&e) => continue,
            Err(_) => break,
        }
    }
    let _ = s_write.shutdown(Shutdown::Both);
    let _ = back.join();
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Pulls complete `X-Amz-Target: Service.Operation` header lines out of the stream text.
fn record_operations(carry: &mut String, operations: &Mutex<Vec<String>>) {
    while let Some(end) = carry.find("\r\n") {
        let line: String = carry.drain(..end + 2).collect();
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("x-amz-target:") {
            let start = line.len() - rest.len();
            operations
                .lock()
                .unwrap()
                .push(line[start..].trim().to_owned());
        }
    }
    // Query-protocol services (STS) name the operation in the form body instead:
    // `Action=AssumeRole&Version=...`, recorded as `AssumeRole`.
    while let Some(start) = carry.find("Action=") {
        let rest = &carry[start + "Action=".len()..];
        let Some(end) = rest.find('&') else { break };
        let action = rest[..end].to_owned();
        operations.lock().unwrap().push(action);
        carry.drain(..start + "Action=".len() + end);
    }
    // Keep only a tail that could be the start of a header line; bodies can be long.
    if carry.len() > 4096 {
        let cut = carry.len() - 256;
        let cut = (cut..carry.len())
            .find(|i| carry.is_char_boundary(*i))
            .unwrap_or(carry.len());
        carry.drain(..cut);
    }
}
