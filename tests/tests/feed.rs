//! End to end: the change feed (`[feed]`) — the real `psstd`, moto's SQS, SNS and EventBridge,
//! and boto3 making the changes.
//!
//! What moto delivers, and what these tests therefore send: moto's Parameter Store and Secrets
//! Manager emit no events of their own, and its EventBridge delivers to SQS targets but not to
//! SNS ones (`put_targets` with a topic fails on `put_events`). So each test makes the change with
//! boto3 and then sends the event document AWS documents for it (a "Parameter Store Change"; a
//! CloudTrail record of the Secrets Manager call): through `put_events` and EventBridge rules made
//! from `deploy/aws/feed.yaml`'s own event patterns, with the queue as target (topology b), or
//! published to the SNS topic as EventBridge would (topology a, where moto's SNS delivers to the
//! subscribed queue itself).
//!
//! The watch interval is 10 minutes wherever a test shows the feed delivering, so only the feed
//! can have brought a rotation in seconds.

use std::time::{Duration, Instant};

use psst_client::{proto::watch_event::Kind, Watch, WatchEvent};
use psst_tests::{
    aws::{free_port, Fault, FaultProxy, Moto, AWS_ENV},
    eventually, next_event as next, sample, scrape, Agent, Mode,
};

const POLICY: &str = r#"
[[rule]]
name = "root"
caller = { uid = [0] }
allow = { read = ["*:**"], watch = ["*:**"], write = ["*:**"] }
"#;

/// Far longer than any wait below: what arrives in seconds came through the feed.
const SLOW: &str = "10m";
/// Time for a change to go boto3 → EventBridge → SQS → psstd → backend → watch on a loaded
/// machine (python's start included); the poll interval is 10 minutes.
const FEED_DELIVERS_WITHIN: Duration = Duration::from_secs(6);

/// Python helpers that send the documented events for a change just made.
const SEND: &str = r#"
ACCOUNT = '123456789012'
def sent(r):
    assert r['FailedEntryCount'] == 0, r
def ssm_changed(name, operation='Update'):
    # AWS Systems Manager User Guide, "Amazon EventBridge event examples": Parameter Store Change.
    sent(events.put_events(Entries=[{
        'Source': 'aws.ssm', 'DetailType': 'Parameter Store Change',
        'Resources': ['arn:aws:ssm:us-east-1:%s:parameter/%s' % (ACCOUNT, name.lstrip('/'))],
        'Detail': json.dumps({'operation': operation, 'name': name, 'type': 'SecureString', 'description': ''}),
    }]))
def sm_called(event, secret_id, arn, version=None):
    # A CloudTrail record of a Secrets Manager call, as EventBridge delivers it.
    response = {'arn': arn}
    if version:
        response['versionId'] = version
    sent(events.put_events(Entries=[{
        'Source': 'aws.secretsmanager', 'DetailType': 'AWS API Call via CloudTrail',
        'Detail': json.dumps({
            'eventVersion': '1.09', 'eventSource': 'secretsmanager.amazonaws.com',
            'eventName': event, 'awsRegion': 'us-east-1',
            'requestParameters': {'secretId': secret_id},
            'responseElements': response,
            'eventType': 'AwsApiCall', 'readOnly': False, 'managementEvent': True,
        }),
    }]))
"#;

/// A queue, and EventBridge rules with deploy/aws/feed.yaml's patterns that target it.
fn queue_with_template_rules(moto: &Moto) -> String {
    let template = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/aws/feed.yaml");
    moto.boto3(&format!(
        r#"
import yaml
class Loader(yaml.SafeLoader):
    pass
# CloudFormation's short forms (!Ref, !Sub, ...) are not needed for the patterns.
Loader.add_multi_constructor('!', lambda loader, suffix, node: None)
template = yaml.load(open('{template}'), Loader=Loader)
url = sqs.create_queue(QueueName='psst-feed-e2e')['QueueUrl']
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['QueueArn'])['Attributes']['QueueArn']
for rule in ['ParameterStoreChanges', 'SecretsManagerChanges']:
    pattern = template['Resources'][rule]['Properties']['EventPattern']
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{{'Id': 'queue', 'Arn': arn}}])
print(url)
"#
    ))
    .trim()
    .to_owned()
}

/// An agent with `ssm`/`sm` through `backends`, the feed through `feed` (`feed_keys` in
/// `[feed]`), and metrics on `metrics`.
fn feed_agent(
    backends: &FaultProxy,
    feed: &FaultProxy,
    feed_keys: &str,
    interval: &str,
    metrics: u16,
) -> Agent {
    let aws = ["ssm", "sm"]
        .map(|kind| {
            format!(
                "[[backend]]\ntype = \"{kind}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\nttl = \"10m\"\n",
                backends.endpoint()
            )
        })
        .concat();
    let config = format!(
        "[log]\nlevel = \"debug\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
         [watch]\ninterval = \"{interval}\"\njitter = 0.2\n\
         [feed]\n{feed_keys}\nendpoint = \"{}\"\nregion = \"us-east-1\"\nhealthy_interval = \"{SLOW}\"\n\
         [server]\nsocket = \"{{dir}}/psst.sock\"\ngrace_period = \"2s\"\n\
         [policy]\nfile = \"{{dir}}/policy.toml\"\n{aws}",
        feed.endpoint()
    );
    Agent::start(
        Mode::Config {
            config: &config,
            policy: POLICY,
        },
        &AWS_ENV,
    )
}

/// moto, a counting proxy in front of it, a queue with the template's rules, and an agent reading
/// that queue (topology b) through the proxy, healthy. Fields drop in order: the agent first.
struct Given {
    agent: Agent,
    port: u16,
    queue: String,
    /// What the setup script printed.
    setup: String,
    proxy: FaultProxy,
    moto: Moto,
}

impl Given {
    /// Runs `setup` (boto3) before the agent starts with `feed_keys` added to its `[feed]`.
    fn start(setup: &str, feed_keys: &str) -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(moto.port);
        let queue = queue_with_template_rules(&moto);
        let setup = moto.boto3(setup);
        let port = free_port();
        let agent = feed_agent(
            &proxy,
            &proxy,
            &format!("queue_url = \"{queue}\"\n{feed_keys}"),
            SLOW,
            port,
        );
        wait_health(port, true, Duration::from_secs(10));
        Self {
            agent,
            port,
            queue,
            setup,
            proxy,
            moto,
        }
    }
}

/// What the gRPC health service says of `psst.feed`, through `psst call` (stock grpc.health.v1).
fn feed_health(agent: &Agent) -> String {
    let out = agent.psst(
        &[
            "call",
            "grpc.health.v1.Health/Check",
            r#"{"service": "psst.feed"}"#,
        ],
        None,
    );
    assert!(out.status.success(), "{}", psst_tests::describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn metric(port: u16, series: &str) -> f64 {
    sample(&scrape(port), series)
}

fn wait_health(port: u16, healthy: bool, within: Duration) {
    let want = f64::from(u8::from(healthy));
    assert!(
        eventually(within, || metric(port, "psst_feed_healthy") == want),
        "psst_feed_healthy never became {want}:\n{}",
        scrape(port)
    );
}

async fn no_event(watch: &mut Watch, within: Duration) {
    if let Ok(event) = tokio::time::timeout(within, watch.next()).await {
        panic!("unexpected watch event: {event:?}");
    }
}

fn value(event: &WatchEvent) -> &[u8] {
    event.secret.as_ref().expect("a secret").value()
}

fn version(event: &WatchEvent) -> &str {
    &event.secret.as_ref().expect("a secret").version_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_reach_watchers_and_the_cache_through_the_feed_in_seconds() {
    let Given {
        agent,
        port,
        queue,
        setup,
        proxy,
        moto,
    } = Given::start(
        "ssm.put_parameter(Name='/app/key', Value='k1', Type='SecureString')\n\
         print(sm.create_secret(Name='app/db', SecretString='one')['ARN'])\n\
         print(sm.create_secret(Name='app/other', SecretString='o1')['ARN'])",
        "",
    );
    let arns: Vec<&str> = setup.lines().collect();
    let client = agent.client().await;
    let mut ssm_watch = client.watch(&["ssm:/app/key"]);
    let mut sm_watch = client.watch(&["sm:app/db"]);
    assert_eq!(
        value(&next(&mut ssm_watch, FEED_DELIVERS_WITHIN).await),
        b"k1"
    );
    assert_eq!(
        value(&next(&mut sm_watch, FEED_DELIVERS_WITHIN).await),
        b"one"
    );
    // Cached, not watched.
    assert_eq!(client.get("sm:app/other").await.unwrap().value(), b"o1");

    let started = Instant::now();
    moto.boto3(&format!(
        "{SEND}\nssm.put_parameter(Name='/app/key', Value='k2', Type='SecureString', Overwrite=True)\nssm_changed('/app/key')"
    ));
    let rotated = next(&mut ssm_watch, FEED_DELIVERS_WITHIN).await;
    assert_eq!(
        (rotated.kind, version(&rotated), value(&rotated)),
        (Kind::NewVersion, "2", &b"k2"[..])
    );
    let ssm_latency = started.elapsed();

    // The same kind of event in an SNS notification envelope (a subscription without raw
    // message delivery), as SNS puts it in the queue.
    moto.boto3(&format!(
        "ssm.put_parameter(Name='/app/key', Value='k3', Type='SecureString', Overwrite=True)\n\
         event = {{'version': '0', 'id': 'e3', 'detail-type': 'Parameter Store Change', 'source': 'aws.ssm', \
         'account': '123456789012', 'time': '2026-01-01T00:00:00Z', 'region': 'us-east-1', \
         'resources': ['arn:aws:ssm:us-east-1:123456789012:parameter/app/key'], \
         'detail': {{'operation': 'Update', 'name': '/app/key', 'type': 'SecureString', 'description': ''}}}}\n\
         sqs.send_message(QueueUrl='{queue}', MessageBody=json.dumps({{'Type': 'Notification', 'MessageId': 'm3', \
         'TopicArn': 'arn:aws:sns:us-east-1:123456789012:psst-changes', 'Message': json.dumps(event), \
         'Timestamp': '2026-01-01T00:00:00.000Z', 'SignatureVersion': '1'}}))"
    ));
    let rotated = next(&mut ssm_watch, FEED_DELIVERS_WITHIN).await;
    assert_eq!((version(&rotated), value(&rotated)), ("3", &b"k3"[..]));

    let started = Instant::now();
    // By name in the request, by ARN in the response: both spellings reach the watcher.
    moto.boto3(&format!(
        "{SEND}\nv = sm.put_secret_value(SecretId='app/db', SecretString='two')['VersionId']\nsm_called('PutSecretValue', 'app/db', '{}', v)",
        arns[0]
    ));
    let rotated = next(&mut sm_watch, FEED_DELIVERS_WITHIN).await;
    assert_eq!(
        (rotated.kind, value(&rotated)),
        (Kind::NewVersion, &b"two"[..])
    );
    let sm_latency = started.elapsed();
    eprintln!("feed delivered: ssm in {ssm_latency:?}, sm in {sm_latency:?} (poll interval 10m)");

    // The event drops the cached value: the next read is the new one, well inside its 10m TTL.
    // This event names the secret by ARN only (a rotation Lambda's call).
    let changes_before = metric(port, "psst_feed_messages_total{outcome=\"change\"}");
    moto.boto3(&format!(
        "{SEND}\nsm.put_secret_value(SecretId='{arn}', SecretString='o2')\nsm_called('PutSecretValue', '{arn}', '{arn}')",
        arn = arns[1]
    ));
    assert!(eventually(FEED_DELIVERS_WITHIN, || metric(
        port,
        "psst_feed_messages_total{outcome=\"change\"}"
    ) > changes_before));
    assert_eq!(client.get("sm:app/other").await.unwrap().value(), b"o2");
    assert!(metric(port, "psst_feed_wakes_total") >= 2.0);
    assert_eq!(metric(port, "psst_feed_fallbacks_total"), 0.0);
    assert_eq!(
        proxy.count("AmazonSQS.DeleteMessageBatch"),
        4,
        "one batch deleted per event: {:?}",
        proxy.operations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_out_of_order_events_cause_no_extra_pushes() {
    let Given {
        agent,
        port,
        setup,
        proxy,
        moto,
        ..
    } = Given::start(
        "ssm.put_parameter(Name='/app/key', Value='k1', Type='SecureString')\n\
         s = sm.create_secret(Name='app/db', SecretString='one')\nprint(s['ARN'])\nprint(s['VersionId'])",
        "",
    );
    let (arn, v1) = setup.trim().split_once('\n').unwrap();
    let client = agent.client().await;
    let mut watch = client.watch(&["sm:app/db"]);
    assert_eq!(
        next(&mut watch, FEED_DELIVERS_WITHIN).await.kind,
        Kind::Current
    );
    let mut ssm_watch = client.watch(&["ssm:/app/key"]);
    assert_eq!(
        next(&mut ssm_watch, FEED_DELIVERS_WITHIN).await.kind,
        Kind::Current
    );

    moto.boto3(&format!(
        "{SEND}\nv = sm.put_secret_value(SecretId='app/db', SecretString='two')['VersionId']\nsm_called('PutSecretValue', 'app/db', '{arn}', v)"
    ));
    let rotated = next(&mut watch, FEED_DELIVERS_WITHIN).await;
    assert_eq!(
        (rotated.kind, value(&rotated)),
        (Kind::NewVersion, &b"two"[..])
    );
    let polls = metric(port, "psst_version_polls_total");
    let changes = metric(port, "psst_feed_messages_total{outcome=\"change\"}");

    // The same event three times more, then the first version's event arriving late.
    moto.boto3(&format!(
        "{SEND}\nv = sm.describe_secret(SecretId='app/db')\nfor _ in range(3):\n    sm_called('PutSecretValue', 'app/db', '{arn}', [k for k, s in v['VersionIdsToStages'].items() if 'AWSCURRENT' in s][0])\nsm_called('PutSecretValue', 'app/db', '{arn}', '{v1}')"
    ));
    assert!(
        eventually(FEED_DELIVERS_WITHIN, || metric(
            port,
            "psst_feed_messages_total{outcome=\"change\"}"
        ) == changes + 4.0),
        "{}",
        scrape(port)
    );
    // They were handled: the poller checked again (duplicates arriving together may share one
    // check), found the version it had, and pushed nothing.
    assert!(eventually(Duration::from_secs(3), || metric(
        port,
        "psst_version_polls_total"
    ) > polls));
    no_event(&mut watch, Duration::from_secs(2)).await;
    assert_eq!(metric(port, "psst_rotations_detected_total"), 1.0);

    // Parameter Store: a woken poller reads the parameter (its cached value was dropped) and
    // compares versions. The same change event twice, then an old "Create" event: no push.
    let reads = proxy.count("AmazonSSM.GetParameter");
    let changes = metric(port, "psst_feed_messages_total{outcome=\"change\"}");
    moto.boto3(&format!(
        "{SEND}\nssm_changed('/app/key')\nssm_changed('/app/key')\nssm_changed('/app/key', 'Create')"
    ));
    assert!(eventually(FEED_DELIVERS_WITHIN, || metric(
        port,
        "psst_feed_messages_total{outcome=\"change\"}"
    ) == changes + 3.0));
    assert!(eventually(Duration::from_secs(3), || proxy
        .count("AmazonSSM.GetParameter")
        > reads));
    no_event(&mut ssm_watch, Duration::from_secs(2)).await;
    assert_eq!(metric(port, "psst_rotations_detected_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_feed_falls_back_to_polling_at_the_watch_interval() {
    let moto = Moto::start();
    let backends = FaultProxy::start(moto.port);
    let feed = FaultProxy::start(moto.port);
    let queue = queue_with_template_rules(&moto);
    moto.boto3("ssm.put_parameter(Name='/app/key', Value='k1', Type='SecureString')");
    let port = free_port();
    // Polling every second while the feed fails, every 10 minutes while it works.
    let agent = feed_agent(
        &backends,
        &feed,
        &format!("queue_url = \"{queue}\"\nwait_time = \"2s\""),
        "1s",
        port,
    );
    wait_health(port, true, Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(2), || feed_health(&agent)
            .contains("\"SERVING\"")),
        "{}",
        feed_health(&agent)
    );
    let client = agent.client().await;
    let mut watch = client.watch(&["ssm:/app/key"]);
    assert_eq!(value(&next(&mut watch, FEED_DELIVERS_WITHIN).await), b"k1");

    // A change without an event: with the feed healthy, polling is slow and nobody hears of it.
    moto.boto3(
        "ssm.put_parameter(Name='/app/key', Value='k2', Type='SecureString', Overwrite=True)",
    );
    no_event(&mut watch, Duration::from_secs(3)).await;

    // The feed's endpoint goes down: polling returns to the watch interval and finds it.
    feed.set(Fault::Reset);
    wait_health(port, false, Duration::from_secs(10));
    assert_eq!(metric(port, "psst_feed_fallbacks_total"), 1.0);
    assert!(
        eventually(Duration::from_secs(2), || feed_health(&agent)
            .contains("NOT_SERVING")),
        "{}",
        feed_health(&agent)
    );
    assert!(metric(port, "psst_feed_receive_errors_total") >= 1.0);
    let found = next(&mut watch, Duration::from_secs(5)).await;
    assert_eq!((found.kind, value(&found)), (Kind::NewVersion, &b"k2"[..]));
    assert!(
        agent.logs().contains("change feed failing"),
        "{}",
        agent.logs()
    );

    // Back up: healthy again, and slow again.
    feed.set(Fault::Pass);
    wait_health(port, true, Duration::from_secs(40));
    let polls = metric(port, "psst_version_polls_total");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        metric(port, "psst_version_polls_total") <= polls + 1.0,
        "polling slowed down again"
    );

    // The queue is deleted (topology b: nobody makes it again): the feed fails for good.
    moto.boto3(&format!("sqs.delete_queue(QueueUrl='{queue}')"));
    wait_health(port, false, Duration::from_secs(10));
    assert_eq!(metric(port, "psst_feed_fallbacks_total"), 2.0);
    moto.boto3(
        "ssm.put_parameter(Name='/app/key', Value='k3', Type='SecureString', Overwrite=True)",
    );
    let found = next(&mut watch, Duration::from_secs(5)).await;
    assert_eq!(value(&found), b"k3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_feed_fails_after_the_heartbeat_and_a_heartbeat_restores_it() {
    let Given {
        agent: _agent,
        port,
        queue,
        moto,
        ..
    } = Given::start("", "heartbeat = \"2s\"\nwait_time = \"1s\"");
    // Nothing arrives: after the heartbeat the feed counts as failing, receives still working.
    wait_health(port, false, Duration::from_secs(6));
    assert_eq!(metric(port, "psst_feed_receive_errors_total"), 0.0);
    // What EventBridge's scheduled rule delivers (deploy/aws/feed.yaml's Heartbeat).
    moto.boto3(&format!(
        "sqs.send_message(QueueUrl='{queue}', MessageBody=json.dumps({{'version': '0', 'id': 'h1', \
         'detail-type': 'Scheduled Event', 'source': 'aws.events', 'account': '123456789012', \
         'time': '2026-01-01T00:00:00Z', 'region': 'us-east-1', \
         'resources': ['arn:aws:events:us-east-1:123456789012:rule/psst-heartbeat'], 'detail': {{}}}}))"
    ));
    wait_health(port, true, Duration::from_secs(5));
    assert_eq!(
        metric(port, "psst_feed_messages_total{outcome=\"heartbeat\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_counted_deleted_and_never_logged_and_no_event_carries_a_value() {
    const CANARY: &str = "feed-canary-7f3a";
    let Given {
        agent,
        port,
        queue,
        setup,
        moto,
        ..
    } = Given::start(
        "print(sm.create_secret(Name='app/db', SecretString='real')['ARN'])",
        "",
    );
    let arn = setup.trim();
    let client = agent.client().await;
    assert_eq!(client.get("sm:app/db").await.unwrap().value(), b"real");

    // Anyone who can send to the queue: garbage, unknown events, broken known ones, and a
    // "change" that carries a value of its own.
    moto.boto3(&format!(
        r#"
for body in [
    'not json {CANARY}',
    json.dumps({{'canary': '{CANARY}'}}),
    json.dumps({{'source': 'aws.ssm', 'detail-type': 'Parameter Store Change', 'detail': {{'description': '{CANARY}'}}}}),
    json.dumps({{'Type': 'Notification', 'Message': '{{{CANARY}'}}),
    json.dumps({{'source': 'aws.secretsmanager', 'detail-type': 'AWS API Call via CloudTrail', 'detail': {{
        'eventSource': 'secretsmanager.amazonaws.com', 'eventName': 'PutSecretValue',
        'requestParameters': {{'secretId': 'app/db', 'secretString': '{CANARY}'}},
        'responseElements': {{'arn': '{arn}', 'secretString': '{CANARY}', 'versionId': 'forged'}}}}}}),
]:
    sqs.send_message(QueueUrl='{queue}', MessageBody=body)
"#
    ));
    assert!(
        eventually(FEED_DELIVERS_WITHIN, || {
            let text = scrape(port);
            sample(&text, "psst_feed_messages_total{outcome=\"malformed\"}") == 3.0
                && sample(&text, "psst_feed_messages_total{outcome=\"unknown\"}") == 1.0
                && sample(&text, "psst_feed_messages_total{outcome=\"change\"}") == 1.0
        }),
        "{}",
        scrape(port)
    );
    // The forged "change" only made the agent read the secret again: the backend's value.
    let served = client.get("sm:app/db").await.unwrap();
    assert_eq!(served.value(), b"real");
    assert_ne!(served.version_id, "forged");
    // Deleted, not left to come back.
    let left = moto.boto3(&format!(
        "a = sqs.get_queue_attributes(QueueUrl='{queue}', AttributeNames=['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'])['Attributes']\n\
         print(int(a['ApproximateNumberOfMessages']) + int(a['ApproximateNumberOfMessagesNotVisible']))"
    ));
    assert_eq!(left.trim(), "0");
    let logs = agent.logs();
    assert!(logs.contains("change feed: message dropped"), "{logs}");
    assert!(
        !logs.contains(CANARY),
        "a message body reached the log:\n{logs}"
    );
    assert!(!scrape(port).contains(CANARY));
    // The feed stays healthy: bad messages are not a failure of the queue.
    assert_eq!(metric(port, "psst_feed_healthy"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_host_queue_is_created_subscribed_used_and_deleted() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(moto.port);
    let topic = moto.boto3("print(sns.create_topic(Name='psst-changes')['TopicArn'])");
    let topic = topic.trim();
    moto.boto3("ssm.put_parameter(Name='/app/key', Value='k1', Type='SecureString')");
    let port = free_port();
    let mut agent = feed_agent(
        &proxy,
        &proxy,
        &format!("create = true\ntopic_arn = \"{topic}\"\nqueue_name = \"psst-e2e-host\""),
        SLOW,
        port,
    );
    wait_health(port, true, Duration::from_secs(15));
    let described = moto.boto3(&format!(
        r#"
url = sqs.get_queue_url(QueueName='psst-e2e-host')['QueueUrl']
a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['All'])['Attributes']
subs = sns.list_subscriptions_by_topic(TopicArn='{topic}')['Subscriptions']
raw = [sns.get_subscription_attributes(SubscriptionArn=s['SubscriptionArn'])['Attributes'].get('RawMessageDelivery') for s in subs]
print(json.dumps({{'retention': a['MessageRetentionPeriod'], 'policy': json.loads(a['Policy']), 'arn': a['QueueArn'],
                  'endpoints': [s['Endpoint'] for s in subs], 'raw': raw}}))
"#
    ));
    let described: serde_json::Value = serde_json::from_str(described.trim()).unwrap();
    assert_eq!(described["retention"], "3600", "{described}");
    assert_eq!(
        described["endpoints"],
        serde_json::json!([described["arn"]])
    );
    assert_eq!(described["raw"], serde_json::json!(["true"]));
    let statement = &described["policy"]["Statement"][0];
    assert_eq!(statement["Action"], "sqs:SendMessage");
    assert_eq!(statement["Condition"]["ArnEquals"]["aws:SourceArn"], topic);

    let client = agent.client().await;
    let mut watch = client.watch(&["ssm:/app/key"]);
    assert_eq!(value(&next(&mut watch, FEED_DELIVERS_WITHIN).await), b"k1");
    // EventBridge → SNS is not delivered by moto: publish the event to the topic as the rule would.
    moto.boto3(&format!(
        "ssm.put_parameter(Name='/app/key', Value='k2', Type='SecureString', Overwrite=True)\n\
         sns.publish(TopicArn='{topic}', Message=json.dumps({{'version': '0', 'id': 'e1', 'detail-type': 'Parameter Store Change', \
         'source': 'aws.ssm', 'account': '123456789012', 'time': '2026-01-01T00:00:00Z', 'region': 'us-east-1', \
         'resources': ['arn:aws:ssm:us-east-1:123456789012:parameter/app/key'], \
         'detail': {{'operation': 'Update', 'name': '/app/key', 'type': 'SecureString', 'description': ''}}}}))"
    ));
    let rotated = next(&mut watch, FEED_DELIVERS_WITHIN).await;
    assert_eq!(
        (rotated.kind, value(&rotated)),
        (Kind::NewVersion, &b"k2"[..])
    );
    drop(watch);
    drop(client);

    // Someone deletes the queue: the feed fails, and the agent makes and subscribes it again.
    moto.boto3(
        "sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName='psst-e2e-host')['QueueUrl'])",
    );
    // (A long poll already waiting ends first: up to wait_time, 20 s.)
    assert!(
        eventually(Duration::from_secs(30), || metric(
            port,
            "psst_feed_fallbacks_total"
        ) == 1.0),
        "{}",
        scrape(port)
    );
    wait_health(port, true, Duration::from_secs(15));
    let again = moto.boto3(&format!(
        "url = sqs.get_queue_url(QueueName='psst-e2e-host')['QueueUrl']\n\
         print(len(sns.list_subscriptions_by_topic(TopicArn='{topic}')['Subscriptions']))"
    ));
    assert_eq!(
        again.trim(),
        "1",
        "one subscription, to the queue made again"
    );

    // A clean shutdown takes the queue and its subscription away.
    assert!(agent.stop().success());
    let after = moto.boto3(&format!(
        r#"
try:
    sqs.get_queue_url(QueueName='psst-e2e-host')
    print('queue still there')
except sqs.exceptions.QueueDoesNotExist:
    print('queue gone')
print(len(sns.list_subscriptions_by_topic(TopicArn='{topic}')['Subscriptions']))
"#
    ));
    assert_eq!(after.trim(), "queue gone\n0", "{}", agent.logs());
}
