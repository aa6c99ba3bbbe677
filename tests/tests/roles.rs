//! Per-workload AWS roles end to end: the `psstd` binary reads Parameter Store and Secrets
//! Manager from `moto_server` with IAM enforcement switched on (moto's `/moto-api/reset-auth`,
//! the server-mode form of `INITIAL_NO_AUTH_ACTION_COUNT`), so every request is signature-checked
//! and evaluated against the policies of the principal that signed it, including the inline
//! policies of an assumed role and the role's trust policy (with `sts:ExternalId`). Two local
//! users (created with `useradd`, removed afterwards) are mapped by `[[role]]` to two roles.
//!
//! moto 5 evaluates actions, not resource ARNs, for Secrets Manager and Parameter Store (their
//! requests reach the policy check with resource `*`), so the two roles differ by service: role A
//! may only read Parameter Store, role B may also `secretsmanager:GetSecretValue`; neither may
//! write. The agent's own IAM user may only assume the two roles: it cannot read a secret
//! itself. A third user is mapped to role A with an external id the role's trust refuses.

use std::{
    io::{Read, Write},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use psst_tests::{
    aws::{free_port, Fault, FaultProxy, Moto},
    describe, ensure_user, Agent, Mode,
};
use serde_json::Value;

const ACCOUNT: &str = "123456789012";
const EXIT_DENIED: i32 = 5;
const EXIT_UNAVAILABLE: i32 = 6;

fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// A local user for one test, removed when the test ends.
struct TempUser(String);

impl TempUser {
    fn new(name: &str) -> Self {
        ensure_user(name);
        TempUser(name.to_owned())
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.0).status();
    }
}

struct World {
    moto: Moto,
    /// Parameter Store and Secrets Manager traffic, counted per operation.
    aws: FaultProxy,
    /// STS traffic only.
    sts: FaultProxy,
    agent: Agent,
}

/// Secrets, the agent's IAM user, two workload roles, then IAM enforcement on; an agent whose
/// AWS backends and STS go through their own counting proxies.
fn world(policy: &str, roles_config: &str, backend_extra: &str) -> World {
    let moto = Moto::start();
    let aws = FaultProxy::start(moto.port);
    let sts = FaultProxy::start(moto.port);
    let keys = moto.boto3(&format!(
        r#"
iam = boto3.client('iam', **kw)
ssm.put_parameter(Name='/team-a/token', Value='a-secret', Type='SecureString')
ssm.put_parameter(Name='/shared/config', Value='shared-value', Type='SecureString')
sm.create_secret(Name='team-b/db', SecretString='b-secret')
iam.create_user(UserName='psst-agent')
agent_arn = 'arn:aws:iam::{ACCOUNT}:user/psst-agent'
iam.put_user_policy(UserName='psst-agent', PolicyName='assume-workload-roles', PolicyDocument=json.dumps({{
    'Version': '2012-10-17',
    'Statement': [{{'Effect': 'Allow',
                    'Action': ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
                    'Resource': ['{role_a}', '{role_b}']}}]}}))
def trust(condition):
    statement = {{'Effect': 'Allow', 'Principal': {{'AWS': agent_arn}},
                  'Action': ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity']}}
    if condition:
        statement['Condition'] = condition
    return json.dumps({{'Version': '2012-10-17', 'Statement': [statement]}})
def allow(actions):
    return json.dumps({{'Version': '2012-10-17',
                       'Statement': [{{'Effect': 'Allow', 'Action': actions, 'Resource': '*'}}]}})
iam.create_role(RoleName='workload-a', AssumeRolePolicyDocument=trust({{'StringEquals': {{'sts:ExternalId': 'ext-a'}}}}))
iam.put_role_policy(RoleName='workload-a', PolicyName='read', PolicyDocument=allow(['ssm:GetParameter', 'ssm:GetParameters', 'ssm:DescribeParameters']))
iam.create_role(RoleName='workload-b', AssumeRolePolicyDocument=trust(None))
iam.put_role_policy(RoleName='workload-b', PolicyName='read', PolicyDocument=allow(['ssm:GetParameter', 'ssm:GetParameters', 'ssm:DescribeParameters', 'secretsmanager:GetSecretValue']))
key = iam.create_access_key(UserName='psst-agent')['AccessKey']
print(key['AccessKeyId'], key['SecretAccessKey'])
"#,
        role_a = role_arn("workload-a"),
        role_b = role_arn("workload-b"),
    ));
    let mut keys = keys.split_whitespace();
    let (key_id, secret_key) = (
        keys.next().unwrap().to_owned(),
        keys.next().unwrap().to_owned(),
    );
    enable_iam_enforcement(&moto);
    let backend = |kind: &str| {
        format!(
            "[[backend]]\ntype = \"{kind}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{backend_extra}\n",
            aws.endpoint()
        )
    };
    let config = format!(
        "[log]\nlevel = \"psstd=debug,warn\"\n[policy]\nfile = \"{{dir}}/policy.toml\"\n\
         [aws_roles]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n{roles_config}\n{}{}",
        sts.endpoint(),
        backend("ssm"),
        backend("sm")
    );
    let agent = Agent::start(
        Mode::Config {
            config: &config,
            policy,
        },
        &[
            ("AWS_ACCESS_KEY_ID", &key_id),
            ("AWS_SECRET_ACCESS_KEY", &secret_key),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    World {
        moto,
        aws,
        sts,
        agent,
    }
}

/// From now on moto authenticates every request and checks it against IAM.
fn enable_iam_enforcement(moto: &Moto) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import urllib.request; print(urllib.request.urlopen(urllib.request.Request('{}/moto-api/reset-auth', data=b'0', method='POST', headers={{'Content-Type': 'text/plain'}})).read().decode())",
            moto.endpoint()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // The emulator itself refuses the test's default credentials now.
    let denied = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import boto3\nboto3.client('ssm', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing').get_parameter(Name='/team-a/token')",
            moto.endpoint()
        ))
        .output()
        .unwrap();
    assert!(!denied.status.success(), "moto did not enforce IAM");
}

fn get_as(w: &World, user: &str, reference: &str) -> Output {
    w.agent.psst_as(user, &["get", reference])
}

fn text_as(w: &World, user: &str, reference: &str) -> String {
    let out = get_as(w, user, reference);
    assert!(
        out.status.success(),
        "{user} {reference}: {}",
        describe(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", describe(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

fn number(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_u64().unwrap(),
        Value::Null => 0,
        other => panic!("not a number: {other}"),
    }
}

fn policy(a: &str, b: &str, c: &str) -> String {
    format!(
        r#"
[[rule]]
name = "workload a"
caller = {{ user = ["{a}", "{c}"] }}
# Wrong on purpose: A may read B's secret as far as psst is concerned. IAM must still say no.
allow = {{ read = ["ssm:/team-a/*", "ssm:/shared/*", "sm:team-b/*"], watch = ["ssm:/team-a/*"] }}

[[rule]]
name = "workload b"
caller = {{ user = ["{b}"] }}
allow = {{ read = ["sm:team-b/*", "ssm:/shared/*"], rotate = ["ssm:/shared/*"] }}

[[rule]]
name = "root administers"
caller = {{ uid = [0] }}
allow = {{ admin = ["*:**"], read = ["ssm:**"] }}

[[role]]
name = "a reads as workload-a"
caller = {{ user = ["{a}"] }}
aws_role = "{role_a}"
external_id = "ext-a"

[[role]]
name = "c names workload-a with the wrong external id"
caller = {{ user = ["{c}"] }}
aws_role = "{role_a}"
external_id = "not-ext-a"

[[role]]
name = "b reads as workload-b"
caller = {{ user = ["{b}"] }}
aws_role = "{role_b}"
"#,
        role_a = role_arn("workload-a"),
        role_b = role_arn("workload-b"),
    )
}

#[test]
fn each_workload_reads_under_its_own_role_and_iam_has_the_last_word() {
    let (a, b, c) = (
        TempUser::new("psst-roles-a"),
        TempUser::new("psst-roles-b"),
        TempUser::new("psst-roles-c"),
    );
    let (a, b, c) = (a.0.as_str(), b.0.as_str(), c.0.as_str());
    // Watches poll every 300 ms, so the test sees the polls; metrics on a free port.
    let metrics_port = free_port();
    let w = world(
        &policy(a, b, c),
        &format!("[watch]\ninterval = \"300ms\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\""),
        "ttl = \"1h\"",
    );

    // Each reads its own secret, under its own role.
    assert_eq!(text_as(&w, a, "ssm:/team-a/token"), "a-secret");
    assert_eq!(text_as(&w, b, "sm:team-b/db"), "b-secret");

    // The agent's own credentials read nothing: root (no [[role]]) is refused by AWS.
    let root = w.agent.psst(&["get", "ssm:/team-a/token"], None);
    assert_eq!(root.status.code(), Some(8), "{}", describe(&root));

    // psst's policy wrongly lets A read B's secret; role A may not, so AWS refuses, the caller
    // gets PERMISSION_DENIED naming the role, and nothing is cached: each ask goes to AWS.
    let before = w.aws.count("secretsmanager.GetSecretValue");
    for _ in 0..2 {
        let out = get_as(&w, a, "sm:team-b/db");
        assert_eq!(out.status.code(), Some(EXIT_DENIED), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&role_arn("workload-a")), "{stderr}");
        assert!(!stderr.contains("b-secret"), "{stderr}");
    }
    assert_eq!(w.aws.count("secretsmanager.GetSecretValue"), before + 2);

    // One secret read by A and by B: two backend reads, one per role, then both cached.
    let before = w.aws.count("AmazonSSM.GetParameter");
    for _ in 0..3 {
        assert_eq!(text_as(&w, a, "ssm:/shared/config"), "shared-value");
        assert_eq!(text_as(&w, b, "ssm:/shared/config"), "shared-value");
    }
    assert_eq!(w.aws.count("AmazonSSM.GetParameter"), before + 2);

    // Many requests, one AssumeRole per role.
    for _ in 0..5 {
        text_as(&w, a, "ssm:/team-a/token");
        text_as(&w, b, "sm:team-b/db");
    }
    assert_eq!(w.sts.count("AssumeRole"), 2, "{:?}", w.sts.operations());

    // STS refuses C's session (the trust policy wants another external id): PERMISSION_DENIED
    // naming the role, and the refusal is remembered rather than asked again per request.
    for _ in 0..4 {
        let out = get_as(&w, c, "ssm:/team-a/token");
        assert_eq!(out.status.code(), Some(EXIT_DENIED), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refused to let the agent assume role")
                && stderr.contains(&role_arn("workload-a")),
            "{stderr}"
        );
    }
    assert_eq!(
        w.sts.count("AssumeRole"),
        3,
        "one refused AssumeRole, not one per request"
    );

    // A rotation (a write) goes out under the caller's role too: role B may not PutParameter,
    // so AWS refuses it although psst's policy allows it.
    let before = w.aws.count("AmazonSSM.PutParameter");
    let out = w.agent.psst_as(b, &["rotate", "ssm:/shared/config"]);
    assert_eq!(out.status.code(), Some(EXIT_DENIED), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&role_arn("workload-b")),
        "{}",
        describe(&out)
    );
    assert_eq!(w.aws.count("AmazonSSM.PutParameter"), before + 1);
    assert_eq!(text_as(&w, b, "ssm:/shared/config"), "shared-value");

    // A watch is served, and polled, under its holder's role (the agent's own credentials read
    // nothing): its value is A's cached entry, its version polls are counted for role A below.
    let watched = Command::new("runuser")
        .args(["-u", a, "--", "timeout", "3"])
        .arg(psst_tests::psst_bin())
        .args(["watch", "--with-values", "ssm:/team-a/token"])
        .env("PSST_SOCKET", &w.agent.socket)
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&watched.stdout);
    assert!(events.contains("a-secret"), "{}", describe(&watched));

    // whoami shows the role a caller reads under; root has none.
    let who = json(&w.agent.psst_as(a, &["whoami", "--json"]));
    assert_eq!(who["aws_role"]["role_arn"], role_arn("workload-a"));
    assert_eq!(who["aws_role"]["mapping"], "a reads as workload-a");
    let uid = psst_tests::uid_of(a).to_string();
    assert_eq!(who["aws_role"]["session_tags"]["psst-uid"], uid.as_str());
    let name = who["aws_role"]["session_name"].as_str().unwrap();
    assert!(name.starts_with("psst-"), "{name}");
    let root_who = json(&w.agent.psst(&["whoami", "--json"], None));
    assert!(root_who["aws_role"].is_null(), "{root_who}");

    // Stats: per role, its sessions, STS calls, backend calls and cache use.
    let stats = json(&w.agent.psst(&["call", "psst.v1.Admin/Stats"], None));
    let roles = stats["roles"].as_array().expect("roles in stats");
    let role = |name: &str| {
        roles
            .iter()
            .find(|r| r["roleArn"] == role_arn(name))
            .unwrap_or_else(|| panic!("{name} in {stats}"))
    };
    let (ra, rb) = (role("workload-a"), role("workload-b"));
    assert_eq!(number(&ra["sessions"]), 2, "a and c: {ra}");
    assert_eq!(number(&ra["assumeCalls"]), 2, "{ra}");
    assert_eq!(number(&ra["assumeFailures"]), 1, "{ra}");
    assert_eq!(number(&rb["assumeCalls"]), 1, "{rb}");
    // A: /team-a/token, /shared/config, the two refused reads of sm:team-b/db, and the watch's
    // version polls, which all worked: under role A, which may DescribeParameters.
    assert!(number(&ra["backendCalls"]) >= 6, "{ra}");
    assert_eq!(number(&ra["backendErrors"]), 2, "{ra}");
    assert_eq!(number(&ra["cacheEntries"]), 2, "{ra}");
    // B: /shared/config, and sm:team-b/db filed under its name and its ARN.
    assert_eq!(number(&rb["cacheEntries"]), 3, "{rb}");
    assert!(number(&rb["cacheBytes"]) > 0, "{rb}");

    // The same, per role, in the metrics.
    let mut metrics = String::new();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    stream.read_to_string(&mut metrics).unwrap();
    let arn_a = role_arn("workload-a");
    for line in [
        format!("psst_role_assume_calls_total{{role=\"{arn_a}\"}} 2"),
        format!("psst_role_assume_failures_total{{role=\"{arn_a}\"}} 1"),
        format!("psst_role_sessions{{role=\"{arn_a}\"}} 2"),
        format!("psst_role_cache_entries{{role=\"{arn_a}\"}} 2"),
        format!("psst_role_backend_errors_total{{role=\"{arn_a}\"}} 2"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // A batch goes out under the caller's role too: A's own item is served, B's is refused by
    // AWS (not by psst, which allows it) and named as refused for role A.
    let out = w
        .agent
        .psst_as(a, &["batch", "ssm:/team-a/token", "sm:team-b/db"]);
    assert_eq!(out.status.code(), Some(EXIT_DENIED), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a-secret"),
        "{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&role_arn("workload-a")),
        "{}",
        describe(&out)
    );

    // The agent's log names roles and sessions, never a value; every read AWS refused under
    // role A (two single reads, one batch item) has its audit record (written in batches, at
    // most `audit.flush_interval` after the request).
    let refused = |logs: &str| {
        logs.lines()
            .filter(|l| {
                l.contains("decision=\"allow\"")
                    && l.contains("sm:team-b/db")
                    && l.contains("permission_denied")
            })
            .count()
    };
    psst_tests::eventually(Duration::from_secs(5), || refused(&w.agent.logs()) >= 3);
    let logs = w.agent.logs();
    assert_eq!(refused(&logs), 3, "{logs}");
    for value in ["a-secret", "b-secret", "shared-value"] {
        assert!(!logs.contains(value), "{value} in the log");
    }
    drop(w.moto);
}

#[test]
fn role_credentials_are_refreshed_ahead_and_an_sts_outage_serves_cached_values() {
    let a = TempUser::new("psst-roles-r");
    let (b, c) = ("psst-roles-unused-b", "psst-roles-unused-c");
    // STS's minimum is 15 minutes; moto takes 4 s (accepted only with an endpoint set).
    let w = world(
        &policy(&a.0, b, c),
        "session_duration = \"4s\"\nrefresh_ahead = \"2s\"",
        "ttl = \"1s\"",
    );
    let a = a.0.as_str();

    // 7 s of reads at 4 s sessions refreshed 2 s ahead: every read works, and STS is asked a
    // few times, in the background, not once per read.
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(7) {
        assert_eq!(text_as(&w, a, "ssm:/team-a/token"), "a-secret");
        reads += 1;
        thread::sleep(Duration::from_millis(200));
    }
    let assumed = w.sts.count("AssumeRole");
    assert!(
        (3..=6).contains(&assumed),
        "{assumed} AssumeRole calls for {reads} reads over 7 s"
    );
    assert!(
        reads > 3 * assumed,
        "{reads} reads, {assumed} AssumeRole calls"
    );

    // STS goes down. The session expires, then so does the cached value's TTL: the value is
    // still served (stale, within max_stale), and a secret never read fails clearly.
    w.sts.set(Fault::Reset);
    thread::sleep(Duration::from_millis(4500));
    let stale = json(&w.agent.psst_as(a, &["get", "--json", "ssm:/team-a/token"]));
    assert_eq!(stale["cache"]["stale"], true, "{stale}");
    let out = get_as(&w, a, "ssm:/shared/config");
    assert_eq!(
        out.status.code(),
        Some(EXIT_UNAVAILABLE),
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot assume role") && stderr.contains(&role_arn("workload-a")),
        "{stderr}"
    );

    // STS is back: the next read assumes the role again and is fresh.
    w.sts.set(Fault::Pass);
    assert!(psst_tests::eventually(Duration::from_secs(10), || {
        get_as(&w, a, "ssm:/shared/config").status.success()
    }));
}

/// STS calls per role per hour at the default duration, measured at 1/450 scale: the default
/// session (1 h, refreshed 5 min ahead) becomes 8 s refreshed 667 ms ahead. A caller reading
/// continuously for 24 s (3 scaled hours) must cause one AssumeRole at first use and one per
/// 7.33 s after: 4 in all, i.e. 3600 / 3300 ≈ 1.09 per hour per session in steady state.
/// Before that, eight concurrent first uses make one.
#[test]
fn sts_calls_per_session_hour_at_the_default_ratio() {
    let a = TempUser::new("psst-roles-h");
    let w = world(
        &policy(&a.0, "psst-roles-unused-b", "psst-roles-unused-c"),
        "session_duration = \"8s\"\nrefresh_ahead = \"667ms\"",
        "ttl = \"100ms\"",
    );
    let a = a.0.as_str();
    // Concurrent first uses of the role (two secrets, so the value cache cannot be what
    // coalesces them) wait for one AssumeRole.
    thread::scope(|scope| {
        let readers: Vec<_> = (0..8)
            .map(|i| {
                let reference = ["ssm:/team-a/token", "ssm:/shared/config"][i % 2];
                let w = &w;
                scope.spawn(move || get_as(w, a, reference))
            })
            .collect();
        for reader in readers {
            let out = reader.join().unwrap();
            assert!(out.status.success(), "{}", describe(&out));
        }
    });
    assert_eq!(w.sts.count("AssumeRole"), 1, "{:?}", w.sts.operations());
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(24) {
        assert_eq!(text_as(&w, a, "ssm:/team-a/token"), "a-secret");
        reads += 1;
        thread::sleep(Duration::from_millis(100));
    }
    let assumed = w.sts.count("AssumeRole");
    eprintln!("{assumed} AssumeRole calls for {reads} reads in 24 s (3 scaled hours)");
    assert!((4..=5).contains(&assumed), "{assumed} AssumeRole calls");
}
