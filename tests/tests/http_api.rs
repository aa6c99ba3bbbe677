//! The AWS agents' HTTP API, end to end: the real `psstd` serving Secrets Manager and Parameter
//! Store from `moto_server`, asked the way apps written for the AWS Secrets Manager Agent and the
//! Lambda extension ask (curl, Python `requests`, `http.client` on the Unix socket), its bodies
//! compared field by field with what boto3 gets from moto for the same secret. Then the TCP
//! listener's token and per-uid identification with two real users, and the attacks: a
//! connection flood and a trickled request head from an unprivileged user.

use std::{io::Write, process::Command, time::Duration};

use psst_tests::{
    aws::{free_port, Moto, AWS_ENV},
    describe, sample, scrape, Agent, Mode, TempUser,
};

const TOKEN: &str = "s3cr3t-ssrf-token";

struct World {
    moto: Moto,
    agent: Agent,
    http_port: u16,
    metrics_port: u16,
}

/// moto, and an agent serving `ssm:` and `sm:` from it with the HTTP front door on its socket
/// and on a TCP port, the token in `AWS_TOKEN` as the AWS agent reads it.
fn world(policy: &str) -> World {
    let moto = Moto::start();
    let http_port = free_port();
    let metrics_port = free_port();
    let backend = |kind: &str| {
        format!(
            "[[backend]]\ntype = \"{kind}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
            moto.endpoint()
        )
    };
    let config = format!(
        "[http]\ntcp_listen = \"127.0.0.1:{http_port}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\n{}{}",
        backend("ssm"),
        backend("sm")
    );
    let mut env = AWS_ENV.to_vec();
    env.push(("AWS_TOKEN", TOKEN));
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &env,
    );
    World {
        moto,
        agent,
        http_port,
        metrics_port,
    }
}

const ROOT_POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["sm:prod/**", "ssm:/prod/**"] }
"#;

/// Python that asks psst over both front doors and boto3 over moto, and compares: prints one
/// line per mismatch, then "done". `get(door, path)` returns (status, body bytes).
fn compare_script(w: &World, cases: &str) -> String {
    format!(
        r#"
import base64, http.client, socket, datetime
SOCK = {sock:?}
PORT = {port}
TOKEN = {token:?}
class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCK)
def get(door, path, headers=None, method='GET'):
    if door == 'unix':
        c = UnixConnection('localhost')
    else:
        c = http.client.HTTPConnection('127.0.0.1', PORT)
        headers = dict({{'X-Aws-Parameters-Secrets-Token': TOKEN}}, **(headers or {{}}))
    c.request(method, path, headers=headers or {{}})
    r = c.getresponse()
    return r.status, r.read()
problems = []
def check(what, ok, detail=''):
    if not ok:
        problems.append(f'{{what}}: {{detail}}')
def seconds(dt):
    return dt.timestamp()
def same_secret(label, body, expected):
    got = json.loads(body)
    order = ['ARN', 'Name', 'VersionId', 'SecretString' if 'SecretString' in expected else 'SecretBinary', 'VersionStages', 'CreatedDate']
    check(label + ' field order', list(got.keys()) == order, list(got.keys()))
    for k in ['ARN', 'Name', 'VersionId', 'SecretString']:
        if k in expected:
            check(label + ' ' + k, got.get(k) == expected[k], (got.get(k), expected[k]))
    if 'SecretBinary' in expected:
        check(label + ' SecretBinary', base64.b64decode(got['SecretBinary']) == expected['SecretBinary'], got.get('SecretBinary'))
    check(label + ' VersionStages', sorted(got['VersionStages']) == sorted(expected['VersionStages']), (got['VersionStages'], expected['VersionStages']))
    check(label + ' CreatedDate is the agent string', isinstance(got['CreatedDate'], str), got['CreatedDate'])
    check(label + ' CreatedDate', abs(float(got['CreatedDate']) - seconds(expected['CreatedDate'])) < 0.001, (got['CreatedDate'], expected['CreatedDate']))
def same_parameter(label, body, expected, selector=None):
    got = json.loads(body)['Parameter']
    for k in ['ARN', 'DataType', 'Name', 'Type', 'Value', 'Version']:
        check(label + ' ' + k, got.get(k) == expected.get(k), (got.get(k), expected.get(k)))
    check(label + ' Selector', got.get('Selector') == selector, got.get('Selector'))
    check(label + ' LastModifiedDate', abs(got['LastModifiedDate'] - seconds(expected['LastModifiedDate'])) < 0.001, got['LastModifiedDate'])
    check(label + ' keys sorted', list(got.keys()) == sorted(got.keys()), list(got.keys()))
{cases}
for p in problems:
    print(p)
print('done')
"#,
        sock = w.agent.socket.to_str().unwrap(),
        port = w.http_port,
        token = TOKEN,
    )
}

fn run_compare(w: &World, cases: &str) {
    let out = w.moto.boto3(&compare_script(w, cases));
    assert_eq!(out.trim(), "done", "mismatches:\n{out}");
}

#[test]
fn bodies_match_what_boto3_gets_from_the_service() {
    let w = world(ROOT_POLICY);
    w.moto.boto3(
        "sm.create_secret(Name='prod/db', SecretString=json.dumps({'user': 'app', 'password': 'p1'}))\n\
         sm.put_secret_value(SecretId='prod/db', SecretString=json.dumps({'user': 'app', 'password': 'p2', 'port': 5432}))\n\
         sm.create_secret(Name='prod/cert', SecretBinary=bytes([0, 1, 2, 255]))\n\
         sm.create_secret(Name='other/secret', SecretString='not yours')\n\
         ssm.put_parameter(Name='/prod/db/password', Value='first', Type='SecureString')\n\
         ssm.put_parameter(Name='/prod/db/password', Value='second', Type='SecureString', Overwrite=True)\n\
         ssm.label_parameter_version(Name='/prod/db/password', ParameterVersion=1, Labels=['live'])\n\
         ssm.put_parameter(Name='/prod/hosts', Value='a,b', Type='StringList')\n",
    );
    run_compare(
        &w,
        r#"
current = sm.get_secret_value(SecretId='prod/db')
previous = sm.get_secret_value(SecretId='prod/db', VersionStage='AWSPREVIOUS')
cert = sm.get_secret_value(SecretId='prod/cert')
arn = current['ARN']
from urllib.parse import quote
for door in ['unix', 'tcp']:
    for label, path, expected in [
        ('query', '/secretsmanager/get?secretId=prod%2Fdb', current),
        ('path', '/v1/prod/db', current),
        ('arn', '/secretsmanager/get?secretId=' + quote(arn, safe=''), current),
        ('stage', '/secretsmanager/get?secretId=prod/db&versionStage=AWSPREVIOUS', previous),
        ('version', '/v1/prod/db?versionId=' + previous['VersionId'], previous),
        ('version and stage', '/v1/prod/db?versionId=' + current['VersionId'] + '&versionStage=AWSCURRENT', current),
        ('binary', '/secretsmanager/get?secretId=prod/cert', cert),
        ('refreshNow', '/secretsmanager/get?secretId=prod/db&refreshNow=true', current),
    ]:
        status, body = get(door, path)
        check(door + ' ' + label + ' status', status == 200, (status, body))
        if status == 200:
            same_secret(door + ' ' + label, body, expected)
    for label, path, expected, selector in [
        ('name', '/systemsmanager/parameters/get?name=%2Fprod%2Fdb%2Fpassword&withDecryption=true', ssm.get_parameter(Name='/prod/db/password', WithDecryption=True)['Parameter'], None),
        ('version suffix', '/systemsmanager/parameters/get?name=/prod/db/password:1&withDecryption=true', ssm.get_parameter(Name='/prod/db/password:1', WithDecryption=True)['Parameter'], ':1'),
        ('label', '/systemsmanager/parameters/get?name=/prod/db/password&label=live', ssm.get_parameter(Name='/prod/db/password:live', WithDecryption=True)['Parameter'], ':live'),
        ('string list', '/systemsmanager/parameters/get?name=/prod/hosts', ssm.get_parameter(Name='/prod/hosts')['Parameter'], None),
    ]:
        status, body = get(door, path)
        check(door + ' ' + label + ' status', status == 200, (status, body))
        if status == 200:
            same_parameter(door + ' ' + label, body, expected, selector)

    # Failures: the service's error type, the AWS agent's layout.
    try:
        sm.get_secret_value(SecretId='prod/missing')
    except sm.exceptions.ResourceNotFoundException as e:
        missing_type = e.response['Error']['Code']
    status, body = get(door, '/secretsmanager/get?secretId=prod/missing')
    check(door + ' not found', (status, json.loads(body)['__type']) == (400, missing_type), (status, body))
    check(door + ' not found layout', body.startswith(b'{"__type":"ResourceNotFoundException", "message":'), body)
    status, body = get(door, '/systemsmanager/parameters/get?name=/prod/missing')
    check(door + ' parameter not found', (status, json.loads(body)['__type']) == (400, 'ParameterNotFound'), (status, body))
    status, body = get(door, '/secretsmanager/get?secretId=other/secret')
    check(door + ' denied', status == 400 and json.loads(body)['__type'] == 'AccessDeniedException', (status, body))
    check(door + ' denied says no value', b'not yours' not in body, body)
    status, body = get(door, '/secretsmanager/get?secretId=prod/db&versionStage=NOSUCH')
    check(door + ' no such stage', status == 400 and b'ResourceNotFoundException' in body, (status, body))
    for label, path, want in [
        ('missing id', '/secretsmanager/get?versionStage=AWSCURRENT', (400, b'missing parameter secretId')),
        ('unknown parameter', '/secretsmanager/get?secretId=prod/db&abc=1', (400, b'unknown parameter: abc')),
        ('bad refreshNow', '/secretsmanager/get?secretId=prod/db&refreshNow=maybe', (400, b'invalid refreshNow value')),
        ('smuggled selector', '/secretsmanager/get?secretId=prod/db%3Fstage%3DAWSPREVIOUS', (400, None)),
        ('unknown path', '/secretsmanager/list', (404, b'Not found')),
        ('ping', '/ping', (200, b'healthy')),
    ]:
        status, body = get(door, path)
        check(door + ' ' + label, status == want[0] and (want[1] is None or body == want[1]), (status, body))
    status, body = get(door, '/secretsmanager/get?secretId=prod/db', method='POST')
    check(door + ' POST', (status, body) == (405, b'Not allowed'), (status, body))
    status, body = get(door, '/secretsmanager/get?secretId=prod/db', headers={'X-Forwarded-For': '10.0.0.1'})
    check(door + ' forwarded', (status, body) == (400, b'Forwarded'), (status, body))
    status, body = get(door, '/secretsmanager/get?secretId=prod/db', headers={'X-Big': 'x' * 20000})
    check(door + ' oversize head', status == 431, status)
"#,
    );
    // The audit trail and the metrics name the front door.
    let logs = w.agent.logs();
    for via in ["http_unix", "http_tcp"] {
        assert!(logs.contains(via), "no audit record via {via}:\n{logs}");
    }
    let metrics = scrape(w.metrics_port);
    for frontend in ["http_unix", "http_tcp"] {
        let ok = sample(
            &metrics,
            &format!(
                "psst_http_requests_total{{frontend=\"{frontend}\",route=\"secretsmanager_get\",status=\"200\"}}"
            ),
        );
        // query, ARN, stage, binary and refreshNow above; the rest are path-style.
        assert!(ok >= 5.0, "{frontend}: {ok}");
    }
    assert!(!metrics.contains("p2"), "a value in the metrics");
    assert!(!logs.contains("\"p2\""), "a value in the logs");
}

#[test]
fn the_tcp_listener_wants_the_token_before_anything_else() {
    let w = world(ROOT_POLICY);
    w.moto
        .boto3("sm.create_secret(Name='prod/db', SecretString='v')\n");
    let before = w.agent.logs().len();
    let status = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let url = format!(
        "http://127.0.0.1:{}/secretsmanager/get?secretId=prod/db",
        w.http_port
    );
    assert_eq!(status(&[&url]), "403", "no token");
    assert_eq!(
        status(&["-H", "X-Aws-Parameters-Secrets-Token: wrong", &url]),
        "403"
    );
    assert_eq!(
        status(&["-X", "POST", &url]),
        "403",
        "the token is checked before the method, as the AWS agent does"
    );
    // Refused requests were not identified, authorized or audited.
    let logs = &w.agent.logs()[before..];
    assert!(!logs.contains("prod/db"), "{logs}");
    assert_eq!(
        status(&["-H", &format!("X-Vault-Token: {TOKEN}"), &url]),
        "200",
        "any of the configured headers"
    );
    // The unix socket is identified by peer credentials and needs no token.
    let out = Command::new("curl")
        .args(["-s", "--unix-socket", w.agent.socket.to_str().unwrap()])
        .arg("http://localhost/secretsmanager/get?secretId=prod/db")
        .output()
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)));
    assert_eq!(body["SecretString"], "v");

    // refreshNow: the cached value until asked, then the backend's current one.
    w.moto
        .boto3("sm.put_secret_value(SecretId='prod/db', SecretString='v2')\n");
    let read = |query: &str| {
        let out = Command::new("curl")
            .args(["-s", "--unix-socket", w.agent.socket.to_str().unwrap()])
            .arg(format!(
                "http://localhost/secretsmanager/get?secretId=prod/db{query}"
            ))
            .output()
            .unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", describe(&out)));
        body["SecretString"].as_str().unwrap().to_owned()
    };
    assert_eq!(read(""), "v", "served from the cache");
    assert_eq!(read("&refreshNow=true"), "v2");
    assert_eq!(read(""), "v2");
}

/// The Python client of the AWS Secrets Manager Agent's README, unchanged but for the secret
/// name and where the token comes from.
#[test]
fn a_client_written_for_the_aws_agent_reads_its_secret_unchanged() {
    let w = world(ROOT_POLICY);
    w.moto.boto3(
        "sm.create_secret(Name='prod/MyTest', SecretString=json.dumps({'password': 'from-aws-agent-client'}))\n",
    );
    let client = format!(
        r#"
import requests
import json

# Function that fetches the secret from Secrets Manager Agent for the provided secret id.
def get_secret():
    # Construct the URL for the GET request
    url = f"http://localhost:{port}/secretsmanager/get?secretId=prod/MyTest"

    # Get the SSRF token from the token file
    with open({token_file:?}) as fp:
        token = fp.read()

    headers = {{"X-Aws-Parameters-Secrets-Token": token.strip()}}

    try:
        # Send the GET request with headers
        response = requests.get(url, headers=headers)

        # Check if the request was successful
        if response.status_code == 200:
            # Return the secret value
            return response.text
        else:
            # Handle error cases
            raise Exception(f"Status code {{response.status_code}} - {{response.text}}")

    except Exception as e:
        # Handle network errors
        raise Exception(f"Error: {{e}}")

print(json.loads(json.loads(get_secret())["SecretString"])["password"])
"#,
        port = w.http_port,
        token_file = w.agent.path("awssmatoken").to_str().unwrap(),
    );
    std::fs::write(w.agent.path("awssmatoken"), TOKEN).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(&client)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from-aws-agent-client"
    );
}

/// Root reads and writes the local store; nobody else is granted anything.
const ROOT_LOCAL_POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["local:**"], write = ["local:**"] }
"#;

/// A local-store agent with the HTTP API on TCP (its token in `AWS_SESSION_TOKEN`, the second
/// variable the AWS agent looks at), a canary secret and one per user.
fn local_agent(policy: &str, extra: &str, port: u16) -> Agent {
    let config = format!(
        "[http]\ntcp_listen = \"127.0.0.1:{port}\"\n{extra}\n[log]\nlevel = \"psstd=debug,info\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\n[[backend]]\ntype = \"local\"\ndir = \"{{dir}}/store\"\n"
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &[("AWS_SESSION_TOKEN", TOKEN)],
    );
    for (name, value) in [
        ("app/canary", "canary-value"),
        ("app/alice", "alice-value"),
        ("app/bob", "bob-value"),
    ] {
        let out = agent.psst(&["put", &format!("local:{name}")], Some(value.as_bytes()));
        assert!(out.status.success(), "{}", describe(&out));
    }
    agent
}

fn curl_as(user: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("runuser")
        .args(["-u", user, "--", "curl", "-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_owned(), body.to_owned())
}

#[test]
fn two_uids_on_tcp_are_told_apart_by_the_socket_lookup() {
    let alice = TempUser::new("psst-http-alice");
    let bob = TempUser::new("psst-http-bob");
    let policy = format!(
        r#"
[[rule]]
name = "root"
caller = {{ uid = [0] }}
allow = {{ read = ["local:**"], write = ["local:**"] }}

[[rule]]
name = "alice-curl"
caller = {{ uid = [{alice}], executable = ["/usr/bin/curl"] }}
allow = {{ read = ["local:app/alice"] }}
"#,
        alice = alice.uid(),
    );
    let port = free_port();
    let agent = local_agent(&policy, "", port);
    let url = |name: &str| {
        format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=local:app/{name}")
    };
    let token = format!("X-Aws-Parameters-Secrets-Token: {TOKEN}");
    let (code, body) = curl_as(alice.name(), &["-H", &token, &url("alice")]);
    assert_eq!(code, "200", "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["SecretString"], "alice-value");
    assert_eq!(body["Name"], "local:app/alice");
    assert!(body["ARN"].is_null());
    // The same token, another uid: denied by policy, not by the token.
    let (code, body) = curl_as(bob.name(), &["-H", &token, &url("alice")]);
    assert_eq!(code, "400", "{body}");
    assert!(body.contains("AccessDeniedException"), "{body}");
    assert!(!body.contains("alice-value"));
    let (code, body) = curl_as(alice.name(), &["-H", &token, &url("bob")]);
    assert_eq!(code, "400", "{body}");
    // The audit trail names who asked, found through the socket tables: uid, pid, executable.
    // Records are written in batches, at most `audit.flush_interval` after their request.
    let bob_line = format!(" uid={} ", bob.uid());
    psst_tests::eventually(Duration::from_secs(5), || {
        agent
            .logs()
            .lines()
            .any(|l| l.contains("local:app/alice") && l.contains(&bob_line))
    });
    let logs = agent.logs();
    let alice_allowed = logs
        .lines()
        .find(|l| l.contains("local:app/alice") && l.contains("alice-curl"))
        .unwrap_or_else(|| panic!("no record of alice's read:\n{logs}"));
    assert!(
        alice_allowed.contains(&format!(" uid={} ", alice.uid())),
        "{alice_allowed}"
    );
    assert!(alice_allowed.contains("/usr/bin/curl"), "{alice_allowed}");
    assert!(alice_allowed.contains("http_tcp"), "{alice_allowed}");
    let bob_denied = logs
        .lines()
        .find(|l| l.contains("local:app/alice") && l.contains(&format!(" uid={} ", bob.uid())))
        .unwrap_or_else(|| panic!("no record of bob's denial:\n{logs}"));
    assert!(bob_denied.contains("deny"), "{bob_denied}");
    // On the Unix socket, the same callers, identified by peer credentials.
    let socket = agent.socket.to_str().unwrap().to_owned();
    let unix_url = "http://localhost/v1/local:app/alice";
    let (code, _) = curl_as(alice.name(), &["--unix-socket", &socket, unix_url]);
    assert_eq!(code, "200");
    let (code, _) = curl_as(bob.name(), &["--unix-socket", &socket, unix_url]);
    assert_eq!(code, "400");
}

#[test]
fn a_flood_of_connections_and_a_trickled_head_do_not_starve_the_canary() {
    let mallory = TempUser::new("psst-http-mallory");
    let port = free_port();
    let agent = local_agent(
        ROOT_LOCAL_POLICY,
        "max_conn = 4\n[connections]\nmax_per_uid = 6\nhandshake_timeout = \"1s\"\n",
        port,
    );
    // Mallory opens 40 connections at once and keeps them: her uid's share (6) is admitted,
    // the rest are closed at once; on her admitted ones, requests past max_conn (4) get 429.
    // Then she trickles a request head a byte at a time, on TCP and on the Unix socket, and
    // keeps one connection silent: each is cut at handshake_timeout (1s).
    let attack = format!(
        r#"
import socket, time, sys
held, codes = [], {{}}
for i in range(40):
    s = socket.create_connection(('127.0.0.1', {port}))
    s.sendall(b'GET /secretsmanager/get?secretId=local:app/canary HTTP/1.1\r\nHost: x\r\nX-Aws-Parameters-Secrets-Token: {TOKEN}\r\n\r\n')
    held.append(s)
for s in held:
    s.settimeout(5)
    try:
        head = s.recv(64)
    except OSError:
        head = b''
    code = head[9:12].decode() if head.startswith(b'HTTP/1.1') else 'closed'
    codes[code] = codes.get(code, 0) + 1
print('flood', codes.get('closed', 0), codes.get('400', 0), codes.get('429', 0), codes.get('200', 0))
sys.stdout.flush()
sys.stdin.readline()  # the canary is read while the connections are held
for s in held:
    s.close()
unix = socket.socket(socket.AF_UNIX)
unix.connect({socket:?})
tcp = socket.create_connection(('127.0.0.1', {port}))
silent = socket.socket(socket.AF_UNIX)
silent.connect({socket:?})
head = b'GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ' + b'a' * 100
started = time.monotonic()
open_streams = [unix, tcp]
for byte in head:
    for s in list(open_streams):
        try:
            s.sendall(bytes([byte]))
        except OSError:
            open_streams.remove(s)
    if not open_streams or time.monotonic() - started > 8:
        break
    time.sleep(0.1)
silent.settimeout(8)
try:
    silent.recv(1)
except OSError:
    pass
print('trickle', len(open_streams), round(time.monotonic() - started, 1))
"#,
        socket = agent.socket.to_str().unwrap(),
    );
    let mut mallory_run = Command::new("runuser")
        .args(["-u", mallory.name(), "--", "python3", "-c", &attack])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(mallory_run.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let counts: Vec<usize> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 4, "{line}");
    let (closed, denied, limited, served) = (counts[0], counts[1], counts[2], counts[3]);
    assert_eq!(closed, 34, "past her uid's share: {line}");
    assert_eq!(denied + limited, 6, "{line}");
    assert!(limited >= 2, "past max_conn: 429: {line}");
    assert_eq!(served, 0, "{line}");
    // While her connections are held, root's canary is still served, over TCP and the socket.
    let token = format!("X-Aws-Parameters-Secrets-Token: {TOKEN}");
    let (code, body) = curl_as(
        "root",
        &[
            "-H",
            &token,
            &format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=local:app/canary"),
        ],
    );
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("canary-value"), "{body}");
    let (code, body) = curl_as(
        "root",
        &[
            "--unix-socket",
            agent.socket.to_str().unwrap(),
            "http://localhost/secretsmanager/get?secretId=local:app/canary",
        ],
    );
    assert_eq!(code, "200", "{body}");
    mallory_run
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let status = mallory_run.wait().unwrap();
    assert!(status.success(), "{line}");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"trickle"), "{line}");
    assert_eq!(fields[1], "0", "a trickled head was not cut: {line}");
    let elapsed: f64 = fields[2].parse().unwrap();
    assert!(elapsed < 4.0, "cut after {elapsed}s: {line}");
}

#[test]
fn check_config_wants_the_token_when_tcp_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("psstd.toml");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, ROOT_POLICY).unwrap();
    std::fs::write(
        &config,
        format!(
            "[http]\ntcp_listen = \"127.0.0.1:2773\"\n[policy]\nfile = \"{}\"\n[[backend]]\ntype = \"local\"\ndir = \"{}/store\"\n",
            policy.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let check = |env: &[(&str, &str)]| {
        let mut command = Command::new(psst_tests::psstd_bin());
        command.arg("check-config").arg(&config);
        for var in [
            "AWS_TOKEN",
            "AWS_SESSION_TOKEN",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        ] {
            command.env_remove(var);
        }
        command.envs(env.iter().copied()).output().unwrap()
    };
    let out = check(&[]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AWS_TOKEN"),
        "{}",
        describe(&out)
    );
    let out = check(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t")]);
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn with_unix_off_the_socket_speaks_grpc_only() {
    let port = free_port();
    // local_agent writes its secrets over gRPC on the socket: that still works.
    let agent = local_agent(ROOT_LOCAL_POLICY, "unix = false", port);
    let (code, _) = curl_as(
        "root",
        &[
            "--unix-socket",
            agent.socket.to_str().unwrap(),
            "http://localhost/secretsmanager/get?secretId=local:app/canary",
        ],
    );
    assert_ne!(
        code, "200",
        "HTTP/1.1 on the socket although [http] unix = false"
    );
    let (code, body) = curl_as(
        "root",
        &[
            "-H",
            &format!("X-Aws-Parameters-Secrets-Token: {TOKEN}"),
            &format!("http://127.0.0.1:{port}/secretsmanager/get?secretId=local:app/canary"),
        ],
    );
    assert_eq!(code, "200", "{body}");
}
