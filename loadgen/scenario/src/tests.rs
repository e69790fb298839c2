use super::*;
use std::collections::BTreeMap;

const GOOD: &str = r#"
name: demo
seed: 7
stack:
  services:
    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }
workload:
  phases:
    - { name: warmup, duration: 2s, rate: 100/s }
    - { name: ramp, duration: 2s, rate: { from: 100/s, to: 400/s } }
    - { name: steady, duration: 3s, rate: 400/s }
  operations:
    - { name: append, weight: 8, fabric.stream.append: { stream: acme/orders/events, payload: 256B } }
    - { name: read, weight: 2, fabric.stream.read: { stream: acme/orders/events, from: latest-100 } }
"#;

fn errors(text: &str) -> Vec<Diagnostic> {
    load("s.yaml", text, &[]).expect_err("scenario should be rejected")
}

#[test]
fn a_good_scenario_loads_with_defaults() {
    let s = load("s.yaml", GOOD, &[]).unwrap();
    assert_eq!(s.seed, 7);
    assert_eq!(s.workload.phases.len(), 3);
    assert_eq!(s.workload.max_in_flight, 1024);
    assert_eq!(s.stack.runtime, Runtime::Process);
    assert_eq!(
        s.workload.phases[1].rate.unwrap(),
        RateSpec::Ramp {
            from: Rate(100.0),
            to: Rate(400.0)
        }
    );
    match &s.workload.operations[1].action {
        Action::Fabric(FabricAction::StreamRead(r)) => assert_eq!(r.from, ReadFrom::Latest(100)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn resolved_yaml_round_trips() {
    let s = load("s.yaml", GOOD, &[]).unwrap();
    let text = to_yaml(&s);
    let again = load("resolved.yaml", &text, &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn unknown_keys_point_at_the_key_and_suggest() {
    let text = GOOD.replace(
        "{ name: warmup, duration: 2s",
        "{ name: warmup, durtion: 2s",
    );
    let errs = errors(&text);
    let first = &errs[0];
    assert_eq!(first.location(), "s.yaml:9:23", "{first}");
    assert!(first.message.contains("unknown key `durtion`"), "{first}");
    assert_eq!(first.hint.as_deref(), Some("did you mean `duration`?"));
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let text = GOOD
        .replace("rate: 100/s }", "rate: 100 }")
        .replace("payload: 256B", "payload: 256kb")
        .replace("seed: 7", "seed: 7\nsead: 8");
    let errs = errors(&text);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{rendered:#?}");
    assert!(
        rendered
            .iter()
            .any(|e| e.starts_with("s.yaml:4:1:") && e.contains("did you mean `seed`"))
    );
    assert!(
        rendered
            .iter()
            .any(|e| e.contains("rate `100` has no unit") && e.contains("100/s"))
    );
    assert!(
        rendered
            .iter()
            .any(|e| e.contains("`kb` is not a size unit"))
    );
}

#[test]
fn unknown_operation_action_suggests_the_catalog_key() {
    let text = GOOD.replace("fabric.stream.append:", "fabric.stream.apend:");
    let errs = errors(&text);
    assert!(
        errs[0]
            .message
            .contains("unknown key `fabric.stream.apend`"),
        "{}",
        errs[0]
    );
    assert_eq!(
        errs[0].hint.as_deref(),
        Some("did you mean `fabric.stream.append`?")
    );
    assert_eq!(errs[0].location(), "s.yaml:13:34");
}

#[test]
fn semantic_errors_have_positions() {
    let text = GOOD.replace("name: ramp", "name: warmup").replace(
        "name: read, weight: 2, fabric.stream.read: { stream:",
        "name: read, weight: 2, fabric.stream.read: { service: fabrik, stream:",
    );
    let errs = errors(&text);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{rendered:#?}");
    assert!(
        rendered[0].starts_with("s.yaml:10:15:") && rendered[0].contains("used twice"),
        "{rendered:#?}"
    );
    assert!(
        rendered[1].contains("no service `fabrik`")
            && rendered[1].contains("did you mean `fabric`"),
        "{rendered:#?}"
    );
}

#[test]
fn syntax_errors_and_wrong_shapes_are_located() {
    let errs = errors("name: x\nstack: [\n");
    assert!(matches!(errs[0].pos, tree::Pos::At { .. }));
    let errs = errors("- just\n- a list\n");
    assert!(errs[0].message.contains("mapping"));
    let errs = errors("name: x\n");
    assert!(
        errs[0].message.contains("missing key `stack`"),
        "{}",
        errs[0]
    );
}

#[test]
fn overrides_apply_and_their_errors_name_the_override() {
    let s = load(
        "s.yaml",
        GOOD,
        &["workload.phases.steady.rate=900/s".into(), "seed=9".into()],
    )
    .unwrap();
    assert_eq!(
        s.workload.phases[2].rate,
        Some(RateSpec::Constant(Rate(900.0)))
    );
    assert_eq!(s.seed, 9);
    let errs = load("s.yaml", GOOD, &["workload.phases.steady.rate=900".into()]).unwrap_err();
    assert_eq!(errs[0].location(), "--set workload.phases.steady.rate=900");
    assert!(
        errs[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains("900/s")
    );
}

#[test]
fn container_mode_and_its_service_settings_load() {
    let text = GOOD
        .replace("stack:\n", "stack:\n  runtime: containers\n")
        .replace(
            "STORAGE_FSYNC_POLICY: batch }",
            "STORAGE_FSYNC_POLICY: batch }, cpus: 1.5, memory: 512MiB, volumes: { cache: /var/cache/x } ",
        )
        .replace(
            "  services:\n",
            "  services:\n    db: { kind: postgres }\n    cache: { kind: redis }\n    web: { image: nginx-local:1, port: 80, ready_path: / }\n",
        );
    let s = load("s.yaml", &text, &[]).unwrap();
    assert_eq!(s.stack.runtime, Runtime::Containers);
    let fabric = &s.stack.services["fabric"];
    assert_eq!(fabric.cpus, Some(1.5));
    assert_eq!(fabric.memory, Some(Size(512 * 1024 * 1024)));
    // Readiness and ports per kind are resolved by gauntlet-stack's kind
    // table (tested there); here, what the YAML says.
    assert_eq!(s.stack.services["db"].kind, Some(ServiceKind::Postgres));
    assert_eq!(s.stack.services["cache"].kind, Some(ServiceKind::Redis));
    let web = &s.stack.services["web"];
    assert_eq!((web.port, web.ready_path.as_deref()), (Some(80), Some("/")));
    // `--runtime containers` is this override.
    let s = load("s.yaml", GOOD, &["stack.runtime=containers".into()]).unwrap();
    assert_eq!(s.stack.runtime, Runtime::Containers);
}

#[test]
fn container_settings_are_checked() {
    let with = |svc: &str| {
        GOOD.replace(
            "    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }",
            svc,
        )
    };
    let errs = errors(&with(
        "    fabric: { kind: fabric }\n    db: { kind: postgres, ready_path: /ready }",
    ));
    assert!(
        errs[0].message.contains("does not serve HTTP"),
        "{}",
        errs[0]
    );
    let errs = errors(&with("    fabric: { kind: fabric, cpus: 0 }"));
    assert!(errs[0].message.contains("cpus"), "{}", errs[0]);
    let errs = errors(&with("    fabric: { kind: fabric, memory: 1KiB }"));
    assert!(errs[0].message.contains("6MiB"), "{}", errs[0]);
    let errs = errors(&with("    fabric: { kind: fabric, image: x:1 }"));
    assert!(
        errs[0].message.contains("both `kind` and `image`"),
        "{}",
        errs[0]
    );
    let errs = errors(&with(
        "    fabric: { kind: fabric }\n    web: { image: web:1 }",
    ));
    assert!(
        errs[0].message.contains("needs container mode"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].to_string().contains("--runtime containers"),
        "{}",
        errs[0]
    );
}

#[test]
fn schema_is_generated_from_the_types() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(schema["title"], "Gauntlet scenario (format v1)");
    assert_eq!(schema["additionalProperties"], false);
    let defs = schema["$defs"].as_object().unwrap();
    for def in [
        "Phase",
        "Operation",
        "StreamAppend",
        "Duration",
        "Rate",
        "Size",
    ] {
        assert!(defs.contains_key(def), "missing {def}");
    }
}

#[test]
fn the_committed_schema_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == json_schema(),
        "scenarios/schema.json is out of date with the scenario types; regenerate it with\n  cargo run --bin loadgen -- schema > scenarios/schema.json"
    );
}

#[test]
fn every_bundled_scenario_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut stack = vec![dir];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                seen += 1;
                match load_file(&path, &[]) {
                    Err(errs) => panic!(
                        "{}: {}",
                        path.display(),
                        errs.iter().map(|e| e.to_string()).collect::<String>()
                    ),
                    // Bundled scenarios target only loopback (or the project's
                    // own containers, which are reached through loopback).
                    Ok(s) => {
                        for (name, url) in &s.stack.external {
                            let host = parse_base_url(url).unwrap().host;
                            assert!(
                                ["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()),
                                "{}: external service `{name}` is not on loopback: {url}",
                                path.display()
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(seen >= 1);
}

#[test]
fn slo_and_gate_sections_load_and_check_names() {
    let text = format!(
        "{GOOD}slo:\n  append: {{ p99: 5ms, throughput: \">= 300/s\", errors: \"< 0.1%\" }}\ngate:\n  phases: [steady]\n  operations:\n    read: {{ p99: 20% }}\n"
    );
    let s = load("s.yaml", &text, &[]).unwrap();
    assert_eq!(s.slo["append"].p99, Some(Duration::from_millis(5)));
    assert_eq!(s.slo["append"].throughput.unwrap().0.0, 300.0);
    let gate = s.gate.unwrap();
    assert_eq!(gate.tolerances("read").p99, Some(Percent(20.0).into()));
    assert_eq!(gate.tolerances("append").p99, Some(Percent(10.0).into()));

    // `off` leaves a metric out; anything else that is not a percentage is
    // an error that names `off` too.
    let off = text.replace("read: { p99: 20% }", "read: { p99: off, p50: 5% }");
    let gate = load("s.yaml", &off, &[]).unwrap().gate.unwrap();
    assert_eq!(gate.tolerances("read").p99, Some(crate::Tolerance::Off));
    assert_eq!(gate.tolerances("read").p50, Some(Percent(5.0).into()));
    assert_eq!(gate.tolerances("append").p99, Some(Percent(10.0).into()));
    let errs = errors(&text.replace("read: { p99: 20% }", "read: { p99: none }"));
    let rendered = errs[0].to_string();
    assert!(
        rendered.contains("`none`") && rendered.contains("`off`"),
        "{rendered}"
    );

    let bad = text
        .replace("slo:\n  append:", "slo:\n  apend:")
        .replace("phases: [steady]", "phases: [stedy]");
    let errs = errors(&bad);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{rendered:#?}");
    assert!(
        rendered[0].contains("no operation `apend`")
            && rendered[0].contains("did you mean `append`"),
        "{rendered:#?}"
    );
    assert!(rendered[1].contains("no phase `stedy`"), "{rendered:#?}");
}

#[test]
fn profiles_load_strictly() {
    let p = load_profile(
        "p.yaml",
        "description: x\nslo:\n  routing: { p99: 100us }\ngate:\n  default: { p99: 5% }\n",
    )
    .unwrap();
    assert_eq!(
        p.slo["routing"].p99,
        Some(Duration(std::time::Duration::from_micros(100)))
    );
    let errs = load_profile("p.yaml", "slo:\n  routing: { p98: 1ms }\n").unwrap_err();
    assert!(errs[0].message.contains("unknown key `p98`"), "{}", errs[0]);
}

#[test]
fn env_values_may_be_numbers_or_booleans() {
    let s = load(
        "s.yaml",
        GOOD,
        &[
            "stack.services.fabric.env.DELAY=3000".into(),
            "stack.services.fabric.env.FLAG=true".into(),
        ],
    )
    .unwrap();
    let env = &s.stack.services["fabric"].env;
    assert_eq!(env["DELAY"], "3000");
    assert_eq!(env["FLAG"], "true");
}

/// A scenario with the given `stack` body and operations, two phases.
fn catalog(stack: &str, operations: &str) -> String {
    format!(
        "name: cat\nstack:\n{stack}\nworkload:\n  phases:\n    - {{ name: a, duration: 2s, rate: 10/s }}\n    - {{ name: b, duration: 2m, rate: 10/s }}\n  operations:\n{operations}"
    )
}

const FABRIC: &str = "  services:\n    fabric: { kind: fabric }";

/// The one error of `text`, rendered; panics when there is not exactly one.
fn one_error(text: &str) -> Diagnostic {
    let errs = errors(text);
    let rendered: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 1, "{rendered:#?}");
    errs.into_iter().next().unwrap()
}

fn assert_error(text: &str, location: &str, message: &str, hint: &str) {
    let e = one_error(text);
    assert_eq!(e.location(), location, "{e}");
    assert!(e.message.contains(message), "message: {e}");
    assert!(
        e.hint.as_deref().unwrap_or_default().contains(hint),
        "hint: {e}"
    );
}

#[test]
fn every_catalog_action_loads_with_its_defaults() {
    let text = catalog(
        FABRIC,
        r#"    - { name: append, fabric.stream.append: { stream: t/n/s, payload: { size: { min: 1B, max: 2KiB } }, batch: 3 } }
    - { name: read, fabric.stream.read: { stream: t/n/s, from: follow }, then: [ { fabric.stream.commit: { group: g } } ] }
    - { name: commit, fabric.stream.commit: { stream: t/n/s, group: g2 } }
    - { name: enqueue, fabric.queue.enqueue: { queue: t/n/q, delay: 5s, payload: { json: { id: "{{seq}}" } } } }
    - { name: work, fabric.queue.reserve: { queue: t/n/q }, then: [ { fabric.queue.ack: {} } ] }
    - { name: batch, fabric.queue.receive: { queue: t/n/q, max: 5 }, then: [ { name: retry, fabric.queue.nack: { delay: 1s } } ] }
    - { name: put, fabric.kv.put: { store: t/n/kv, key: "k-{{seq}}", value: { text: "v{{seq}}" }, ttl: 1m }, then: [ { fabric.kv.get: {} }, { fabric.kv.delete: { missing: ok } } ] }
    - { name: get, fabric.kv.get: { store: t/n/kv, key: { prefix: k-, count: 100, distribution: { zipf: 1.2 } }, missing: ok } }
    - { name: web, http: { url: "/x/{{seq}}", method: POST, body: "hello {{seq}}", expect: [200, 201] } }
"#,
    );
    let s = load("s.yaml", &text, &[]).unwrap();
    let ops = &s.workload.operations;
    match &ops[1].action {
        Action::Fabric(FabricAction::StreamRead(r)) => assert_eq!(r.from, ReadFrom::Follow),
        other => panic!("{other:?}"),
    }
    assert_eq!(ops[1].then[0].name, "commit");
    assert_eq!(ops[1].step_name(&ops[1].then[0]), "read.commit");
    assert_eq!(ops[5].then[0].name, "retry");
    match &ops[4].action {
        Action::Fabric(FabricAction::QueueReserve(r)) => {
            assert_eq!(r.visibility, Duration::from_secs(30));
            assert_eq!(r.wait, Duration::default());
        }
        other => panic!("{other:?}"),
    }
    match &ops[7].action {
        Action::Fabric(FabricAction::KvGet(g)) => {
            assert_eq!(g.missing, Missing::Ok);
            assert_eq!(
                g.key,
                Some(KeySpec::Space {
                    prefix: "k-".into(),
                    count: 100,
                    distribution: KeyDistribution::Zipf(1.2)
                })
            );
        }
        other => panic!("{other:?}"),
    }
    match &ops[8].action {
        Action::Http(h) => {
            assert_eq!(h.method, "POST");
            assert_eq!(h.expect, Expect::Codes(vec![200, 201]));
            assert_eq!(h.body, Some(Body(Payload::Text("hello {{seq}}".into()))));
        }
        other => panic!("{other:?}"),
    }
    // The resolved copy states every default and loads back to the same scenario.
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn external_services_boot_nothing_and_are_targets() {
    let text = catalog(
        "  external:\n    nginx: \"http://127.0.0.1:8080/base\"",
        "    - { name: index, http: { url: /index.html } }\n    - { name: append, fabric.stream.append: { service: nginx, stream: t/n/s } }\n",
    );
    let s = load("s.yaml", &text, &[]).unwrap();
    assert!(s.stack.services.is_empty());
    assert_eq!(
        target_service(&s, &s.workload.operations[0].action),
        Some("nginx")
    );
    let base = parse_base_url(&s.stack.external["nginx"]).unwrap();
    assert_eq!(
        (base.host.as_str(), base.port, base.prefix.as_str()),
        ("127.0.0.1", 8080, "/base")
    );
    assert_eq!(parse_base_url("http://[::1]").unwrap().port, 80);

    assert_error(
        &text.replace("http://127.0.0.1:8080/base", "https://127.0.0.1:8443"),
        "s.yaml:4:12",
        "plain HTTP only",
        "`http://`",
    );
    assert_error(
        &text.replace("http://127.0.0.1:8080/base", "http://127.0.0.1:99999"),
        "s.yaml:4:12",
        "no valid host and port",
        "http://127.0.0.1:8080",
    );
    assert_error(
        &text.replace("service: nginx", "service: ngnix"),
        "s.yaml:11:56",
        "no service `ngnix`",
        "did you mean `nginx`?",
    );
    let both = catalog(
        &format!("{FABRIC}\n  external:\n    fabric: \"http://127.0.0.1:1\""),
        "    - { name: a, fabric.stream.append: { stream: t/n/s } }\n",
    );
    assert_error(
        &both,
        "s.yaml:6:5",
        "both a booted service and an external one",
        "another name",
    );
    let nothing = catalog("  services: {}", "    - { name: a, http: { url: / } }\n");
    let errs = errors(&nothing);
    assert_eq!(errs[0].location(), "s.yaml:3:11", "{}", errs[0]);
    assert!(errs[0].message.contains("the stack has no services"));
    assert!(errs[0].hint.as_deref().unwrap().contains("external:"));
}

#[test]
fn phase_shapes_parse_and_their_mistakes_are_explained() {
    let with_rate = |rate: &str| GOOD.replace("rate: { from: 100/s, to: 400/s }", rate);
    let s = load(
        "s.yaml",
        &with_rate("rate: { from: 100/s, to: 400/s, steps: 4 }"),
        &[],
    )
    .unwrap();
    assert_eq!(
        s.workload.phases[1].rate.unwrap(),
        RateSpec::Steps {
            from: Rate(100.0),
            to: Rate(400.0),
            steps: Some(4),
            every: None
        }
    );
    let s = load(
        "s.yaml",
        &with_rate("rate: { base: 10/s, burst: 100/s, every: 1s, for: 100ms }"),
        &[],
    )
    .unwrap();
    assert!(matches!(
        s.workload.phases[1].rate,
        Some(RateSpec::Spike { .. })
    ));
    assert_eq!(to_yaml(&s).matches("for: 100ms").count(), 1);

    assert_error(
        &with_rate("rate: { from: 100/s, to: 400/s, steps: 4, every: 1s }"),
        "s.yaml:10:41",
        "give `steps` or `every`, not both",
        "`steps: 4`",
    );
    assert_error(
        &with_rate("rate: { from: 100/s, to: 400/s, steps: 1 }"),
        "s.yaml:10:74",
        "`steps: 1` is not a staircase",
        "2 or more",
    );
    assert_error(
        &with_rate("rate: { from: 100/s, to: 400/s, every: 2s }"),
        "s.yaml:10:74",
        "shorter than the phase",
        "at least two steps",
    );
    assert_error(
        &with_rate("rate: { base: 10/s, burst: 100/s, every: 1s }"),
        "s.yaml:10:41",
        "a spike rate needs `for`",
        "{ base: 100/s, burst: 2000/s, every: 30s, for: 2s }",
    );
    assert_error(
        &with_rate("rate: { base: 10/s, burst: 100/s, every: 1s, for: 1s }"),
        "s.yaml:10:85",
        "shorter than `every: 1s`",
        "every: 30s, for: 2s",
    );
    assert_error(
        &with_rate("rate: { soak: 100/s }"),
        "s.yaml:10:31",
        "a soak phase lasts at least 1m, not 2s",
        "constant rate",
    );
    assert_error(
        &with_rate("rate: { from: 100/s, too: 400/s }"),
        "s.yaml:10:56",
        "unknown key `too`",
        "did you mean `to`?",
    );
    assert_error(
        &with_rate("rate: { from: 100/s, burst: 400/s }"),
        "s.yaml:10:41",
        "`from` does not belong to a spike rate",
        "base: 100/s",
    );
}

#[test]
fn phase_mixes_name_operations() {
    let text = GOOD.replace(
        "rate: 400/s }",
        "rate: 400/s, mix: { append: 1, raed: 2 } }",
    );
    assert_error(
        &text,
        "s.yaml:11:68",
        "no operation `raed`",
        "did you mean `read`?",
    );
    let text = GOOD.replace("rate: 400/s }", "rate: 400/s, mix: { append: 0 } }");
    assert_error(
        &text,
        "s.yaml:11:55",
        "mixes no operation",
        "weight above 0",
    );
    // With a mix somewhere, an operation may have weight 0 (only in mixes).
    let text = GOOD
        .replace("rate: 400/s }", "rate: 400/s, mix: { append: 1 } }")
        .replace("name: read, weight: 2", "name: read, weight: 0");
    let s = load("s.yaml", &text, &[]).unwrap();
    assert_eq!(s.workload.phases[2].mix.as_ref().unwrap()["append"], 1);
    // …but a phase without a mix needs an operation with a weight.
    let text = text.replace("name: append, weight: 8", "name: append, weight: 0");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "warmup and ramp have no mix");
    assert_eq!(errs[0].location(), "s.yaml:9:7", "{}", errs[0]);
    assert!(
        errs[0]
            .message
            .contains("phase `warmup` has no operation to run")
    );
}

#[test]
fn payloads_keys_and_templates_are_checked() {
    let op = |action: &str| catalog(FABRIC, &format!("    - {{ name: x, {action} }}\n"));
    assert_error(
        &op("fabric.stream.append: { stream: t/n/s, payload: { jsn: { a: 1 } } }"),
        "s.yaml:10:66",
        "unknown payload kind `jsn`",
        "{ json: … }",
    );
    assert_error(
        &op("fabric.stream.append: { stream: t/n/s, payload: { size: { min: 2KiB, max: 1KiB } } }"),
        "s.yaml:10:66",
        "`min` 2KiB is above `max` 1KiB",
        "swap them",
    );
    assert_error(
        &op(
            "fabric.stream.append: { stream: t/n/s, payload: { size: { one_of: [1B, 2B], weights: [1] } } }",
        ),
        "s.yaml:10:66",
        "one weight per size",
        "",
    );
    assert_error(
        &op("fabric.queue.enqueue: { queue: t/n/q, payload: { json: { id: \"{{sequence}}\" } } }"),
        "s.yaml:10:65",
        "unknown placeholder `{{sequence}}`",
        "seq, counter:NAME",
    );
    assert_error(
        &op("fabric.stream.append: { stream: t/n/s, payload: { size: 0B } }"),
        "s.yaml:10:66",
        "`payload` must be at least 1B",
        "empty payloads",
    );
    assert_error(
        &op("fabric.stream.append: { stream: t/n/s, batch: 1000, payload: 16KiB }"),
        "s.yaml:10:79",
        "exceeds the 8MiB",
        "lower the size",
    );
    assert_error(
        &op("fabric.kv.get: { store: t/n/kv, key: { prefix: a, cout: 10 } }"),
        "s.yaml:10:55",
        "unknown key `cout` in a key space",
        "did you mean `count`?",
    );
    assert_error(
        &op("fabric.kv.get: { store: t/n/kv, key: { count: 10, distribution: { zipf: 0 } } }"),
        "s.yaml:10:55",
        "Zipf exponent",
        "{ zipf: 1.1 }",
    );
    assert_error(
        &op("fabric.kv.get: { key: a }"),
        "s.yaml:10:33",
        "`fabric.kv.get` names no `store`",
        "chain it after another KV operation",
    );
    assert_error(
        &op("fabric.kv.put: { store: t/n/kv }"),
        "s.yaml:10:33",
        "`fabric.kv.put` names no `key`",
        "key: { prefix: user-",
    );
}

#[test]
fn chains_need_what_they_act_on() {
    let op = |text: &str| catalog(FABRIC, &format!("    - {text}\n"));
    assert_error(
        &op("{ name: x, fabric.queue.ack: {} }"),
        "s.yaml:10:36",
        "acts on the jobs a reserve or receive got",
        "then: [ { fabric.queue.ack: {} } ]",
    );
    assert_error(
        &op(
            "{ name: x, fabric.queue.enqueue: { queue: t/n/q }, then: [ { fabric.queue.nack: {} } ] }",
        ),
        "s.yaml:10:87",
        "`fabric.queue.nack` acts on the jobs",
        "chain it",
    );
    assert_error(
        &op("{ name: x, fabric.stream.commit: { group: g } }"),
        "s.yaml:10:40",
        "names no `stream`",
        "chain it after a read or an append",
    );
    assert_error(
        &op(
            "{ name: x, fabric.queue.reserve: { queue: t/n/q }, then: [ { weight: 2, fabric.queue.ack: {} } ] }",
        ),
        "s.yaml:10:66",
        "a step has no `weight`",
        "only operations have weights",
    );
    assert_error(
        &op(
            "{ name: x, fabric.kv.put: { store: t/n/kv, key: k }, then: [ { fabric.kv.get: {} }, { fabric.kv.get: {} } ] }",
        ),
        "s.yaml:10:91",
        "two steps named `get`",
        "name them apart",
    );
    let errs = errors(&op(
        "{ name: x, http: { url: / }, then: [ { fabric.kv.get: { store: t/n/kv, key: k } } ] }",
    ));
    assert!(
        errs[0].message.contains("speaks another protocol") && errs[0].location() == "s.yaml:10:61",
        "{}",
        errs[0]
    );
    // A step's recorded name is an operation name for SLOs and gates.
    let text = format!(
        "{}slo:\n  x.ack: {{ p99: 5ms }}\n  x.ak: {{ p99: 5ms }}\n",
        op(
            "{ name: x, fabric.queue.reserve: { queue: t/n/q }, then: [ { fabric.queue.ack: {} } ] }"
        )
    );
    assert_error(
        &text,
        "s.yaml:13:3",
        "no operation `x.ak`",
        "did you mean `x.ack`?",
    );
}

#[test]
fn http_operations_are_checked() {
    let op = |http: &str| {
        catalog(
            FABRIC,
            &format!("    - {{ name: x, http: {{ {http} }} }}\n"),
        )
    };
    assert_error(
        &op("url: /a, method: GTE"),
        "s.yaml:10:43",
        "`GTE` is not an HTTP method",
        "use one of GET, POST",
    );
    assert_error(
        &op("url: index.html"),
        "s.yaml:10:31",
        "not relative to the service",
        "start it with `/`",
    );
    assert_error(
        &op("url: /, expect: 999"),
        "s.yaml:10:42",
        "not an HTTP status",
        "100 to 599",
    );
    assert_error(
        &op("url: /, body: hi"),
        "s.yaml:10:40",
        "a GET request with a body",
        "method: POST",
    );
    assert_error(
        &op("url: /, headers: { \"bad header\": x }"),
        "s.yaml:10:45",
        "`bad header` is not a header name",
        "content-type",
    );
    assert_error(
        &op("url: /, max: 3"),
        "s.yaml:10:34",
        "unknown key `max`",
        "",
    );
}

#[test]
fn queue_limits_are_the_fabric_s() {
    let op = |action: &str| catalog(FABRIC, &format!("    - {{ name: x, {action} }}\n"));
    assert_error(
        &op("fabric.queue.receive: { queue: t/n/q, max: 101 }"),
        "s.yaml:10:61",
        "`max` 101 is out of range",
        "1 to 100 jobs",
    );
    assert_error(
        &op("fabric.queue.reserve: { queue: t/n/q, wait: 30s }"),
        "s.yaml:10:62",
        "20s long poll",
        "at most `20s`",
    );
    assert_error(
        &op("fabric.queue.enqueue: { queue: not-a-path }"),
        "s.yaml:10:49",
        "`not-a-path` is not a queue path",
        "tenant/namespace/name",
    );
}

#[test]
fn env_variables_fill_values_and_a_missing_one_is_located() {
    let text = GOOD.replace("rate: 400/s }", "rate: ${STEADY_RATE} }");
    let env = |n: &str| (n == "STEADY_RATE").then(|| "900/s".to_owned());
    let s = load_with_env("s.yaml", &text, &[], &env).unwrap();
    assert_eq!(
        s.workload.phases[2].rate,
        Some(RateSpec::Constant(Rate(900.0)))
    );
    let errs = load_with_env("s.yaml", &text, &[], &|_| None).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].location(), "s.yaml:11:43");
    assert!(errs[0].message.contains("`STEADY_RATE` is not set"));
    assert!(
        errs[0].to_string().contains("${STEADY_RATE}"),
        "{}",
        errs[0]
    );
}

const CLOSED: &str = r#"
name: closed
stack:
  services:
    fabric: { kind: fabric }
workload:
  engine: closed
  think_time: 10ms
  phases:
    - { name: rampup, duration: 2s, users: { from: 0, to: 8 } }
    - { name: steady, duration: 3s, users: 8 }
  operations:
    - { name: append, fabric.stream.append: { stream: acme/orders/events } }
"#;

#[test]
fn a_closed_scenario_gives_users_per_phase() {
    let s = load("s.yaml", CLOSED, &[]).unwrap();
    assert_eq!(s.workload.engine, EngineKind::Closed);
    assert_eq!(
        s.workload.phases[0].users,
        Some(UsersSpec::Ramp { from: 0, to: 8 })
    );
    assert_eq!(s.workload.phases[1].users, Some(UsersSpec::Constant(8)));
    assert_eq!(s.workload.phases[1].rate, None);
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn rates_and_users_belong_to_their_model() {
    // A rate in a closed-model phase.
    let errs = errors(&CLOSED.replace("users: 8 }", "rate: 100/s }"));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("closed model runs users")
                && e.location().starts_with("s.yaml:")),
        "{errs:?}"
    );
    // Users in an open-model phase.
    let open = CLOSED.replace("  engine: closed\n  think_time: 10ms\n", "");
    let errs = errors(&open);
    assert!(
        errs.iter()
            .any(|e| e.message.contains("open model does not use")),
        "{errs:?}"
    );
    // A per-phase mix in a closed-model phase.
    let errs = errors(&CLOSED.replace("users: 8 }", "users: 8, mix: { append: 1 } }"));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("closed model does not use")),
        "{errs:?}"
    );
    // Think time without the closed model.
    let errs = errors(&CLOSED.replace("  engine: closed\n", ""));
    assert!(
        errs.iter().any(|e| e.message.contains("`think_time`")),
        "{errs:?}"
    );
    // No users at all, and a user count that is not a number.
    let errs = errors(&CLOSED.replace("users: 8 }", "users: 0 }"));
    assert!(
        errs.iter().any(|e| e.message.contains("has no users")),
        "{errs:?}"
    );
    let errs = errors(&CLOSED.replace("users: 8 }", "users: 8/s }"));
    assert!(
        errs.iter()
            .any(|e| e.message.contains("not a number of users")),
        "{errs:?}"
    );
}

#[test]
fn a_service_disk_is_a_size_of_at_least_8mib() {
    let with = |disk: &str| {
        GOOD.replace(
            "    fabric: { kind: fabric, env: { STORAGE_FSYNC_POLICY: batch } }",
            &format!("    fabric: {{ kind: fabric, disk: {disk} }}"),
        )
    };
    let s = load("s.yaml", &with("64MiB"), &[]).unwrap();
    assert_eq!(s.stack.services["fabric"].disk, Some(Size(64 << 20)));
    assert_eq!(
        load("s.yaml", GOOD, &[]).unwrap().stack.services["fabric"].disk,
        None
    );
    // Too small: located at the value, with a hint.
    let errs = errors(&with("1MiB"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("at least 8MiB"), "{}", errs[0]);
    assert_eq!(errs[0].location(), "s.yaml:6:35", "{}", errs[0]);
    assert!(
        errs[0].to_string().contains("e.g. `disk: 64MiB`"),
        "{}",
        errs[0]
    );
    // Not a size: the units parser's error, located too.
    let errs = errors(&with("64"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].location().starts_with("s.yaml:6:"), "{}", errs[0]);
    assert!(errs[0].to_string().contains("64"), "{}", errs[0]);
}

const ACTORS: &str = "  services:\n    actors: { kind: actors }";

#[test]
fn every_actors_action_loads_with_its_defaults() {
    let text = catalog(
        ACTORS,
        r#"    - { name: message, actors.send: { component: ingest, batch: 1000 } }
    - { name: fanout, actors.publish: { topic: news, payload: { json: { n: "{{seq}}" } }, key: { prefix: k-, count: 4 } } }
    - { name: ask, actors.request: { component: echo } }
    - { name: find, actors.lookup: { component: echo } }
    - name: lifecycle
      actors.spawn: { name: "w-{{seq}}", component: { behavior: counter, mailbox: 100, restart: transient, max_restarts: 3, within: 30s } }
      then: [ { actors.send: {} }, { actors.stop: {} } ]
    - name: storm
      actors.spawn: { count: 50, prefix: "s-{{seq}}-", component: { behavior: sink } }
      then: [ { actors.stop: {} } ]
"#,
    );
    let s = load("s.yaml", &text, &[]).unwrap();
    let ops = &s.workload.operations;
    match &ops[0].action {
        Action::Actors(ActorsAction::Send(a)) => {
            assert_eq!(a.batch, 1000);
            assert_eq!(a.key, KeySpec::Template("gauntlet".into()));
            assert_eq!(a.wait, SendWait::Handled);
            assert_eq!(a.payload, Payload::Random(SizeDist::Fixed(Size(64))));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ops[4].step_name(&ops[4].then[0]), "lifecycle.send");
    assert_eq!(ops[4].step_name(&ops[4].then[1]), "lifecycle.stop");
    match &ops[4].action {
        Action::Actors(ActorsAction::Spawn(sp)) => {
            let json = sp.component.to_json(Some("w-1")).unwrap();
            assert_eq!(json["behavior"]["kind"], "counter");
            assert_eq!(json["runtime"]["message_queue_size"], 100);
            assert_eq!(json["supervision"]["restart"], "transient");
            assert_eq!(json["supervision"]["within_seconds"], 30);
            assert_eq!(json["component"]["name"], "w-1");
        }
        other => panic!("{other:?}"),
    }
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn actors_actions_are_checked() {
    let op = |o: &str| catalog(ACTORS, &format!("    - {o}\n"));
    // The operation's line; the column is the offending value's.
    let assert_error = |text: &str, line: &str, message: &str, hint: &str| {
        let e = one_error(text);
        assert!(e.location().starts_with(line), "{e}");
        assert!(e.message.contains(message), "message: {e}");
        assert!(
            e.hint.as_deref().unwrap_or_default().contains(hint),
            "hint: {e}"
        );
    };
    assert_error(
        &op("{ name: m, actors.send: { component: ingest, batch: 0 } }"),
        "s.yaml:10:",
        "`batch` 0 is out of range",
        "1 to 100000",
    );
    assert_error(
        &op("{ name: m, actors.send: { batch: 10 } }"),
        "s.yaml:10:",
        "`actors.send` names no `component`",
        "chain it after `actors.spawn`",
    );
    assert_error(
        &op("{ name: m, actors.lookup: { component: .hidden } }"),
        "s.yaml:10:",
        "`.hidden` is not a component name",
        "not starting with `.`",
    );
    assert_error(
        &op("{ name: m, actors.spawn: { count: 10, component: { behavior: sink } } }"),
        "s.yaml:10:",
        "a batch spawn needs a `prefix`",
        "storm-{{seq}}-",
    );
    assert_error(
        &op("{ name: m, actors.spawn: { name: a, component: { behavior: forward } } }"),
        "s.yaml:10:",
        "a `forward` component needs `to:`",
        "pipeline",
    );
    assert_error(
        &op("{ name: m, actors.spawn: { name: a, component: { file: nowhere/c.toml } } }"),
        "s.yaml:10:",
        "component file `nowhere/c.toml` not found",
        "relative to the scenario's file",
    );
    assert_error(
        &op("{ name: m, actors.spawn: { name: a, component: {} } }"),
        "s.yaml:10:",
        "the component has no `behavior`",
        "echo | counter | sink | forward | topic",
    );
    assert_error(
        &op("{ name: m, actors.spawn: { name: a, component: { behavior: echo, to: b } } }"),
        "s.yaml:10:",
        "`to` is for `forward` components, not `echo`",
        "remove `to`",
    );
    // An actors action with no actors service to go to.
    let e = one_error(&catalog(
        FABRIC,
        "    - { name: m, actors.send: { component: x } }\n",
    ));
    assert!(
        e.message
            .contains("cannot tell which service this actors operation targets"),
        "{e}"
    );
    let e = one_error(&op(
        "{ name: m, actors.send: { component: x, behavor: x } }",
    ));
    assert!(
        e.to_string().contains("did you mean `behavior`")
            || e.to_string().contains("unknown key `behavor`"),
        "{e}"
    );
}

/// The `setup.actors` section of a scenario with one actors service.
fn with_setup(setup: &str) -> String {
    format!(
        "{}setup:\n  actors:\n{setup}",
        catalog(
            ACTORS,
            "    - { name: m, actors.send: { component: ingest } }\n"
        )
    )
}

#[test]
fn actors_setup_loads_and_builds_its_topology() {
    let s = load(
        "s.yaml",
        &with_setup(
            "    components:\n      - { name: echo, behavior: echo }\n      - { name: fan, behavior: counter }\n    pipelines:\n      - { name: ingest, stages: [ { behavior: forward }, { behavior: forward }, { behavior: counter, max_restarts: 3 } ] }\n    topics:\n      - { name: news, subscribers: { count: 3 }, subscribe: [fan] }\n",
        ),
        &[],
    )
    .unwrap();
    let setup = s.setup.actors.as_ref().unwrap();
    assert_eq!(setup.service_in(&s).as_deref(), Some("actors"));
    let t = setup.topology();
    let names: Vec<&str> = t
        .components
        .iter()
        .map(|c| c.name.as_deref().unwrap_or_default())
        .collect();
    // A pipeline is spawned from its end, so each forward finds its next stage.
    assert_eq!(
        names,
        ["echo", "fan", "ingest-3", "ingest-2", "ingest-1", "news"]
    );
    assert_eq!(t.components[4].to.as_deref(), Some("ingest-2"));
    assert_eq!(t.components[3].to.as_deref(), Some("ingest-3"));
    assert_eq!(t.entry("ingest"), "ingest-1");
    assert_eq!(t.sinks("ingest"), ["ingest-3"]);
    assert_eq!(
        t.sinks("news"),
        ["fan", "news-sub-0", "news-sub-1", "news-sub-2"]
    );
    assert!(t.sinks("echo").is_empty());
    let budgets: BTreeMap<String, u32> = setup.restart_budgets().into_iter().collect();
    assert_eq!(budgets["ingest-3"], 3);
    assert_eq!(budgets["news-sub-1"], 10);
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn actors_setup_mistakes_are_located() {
    let e = errors(&with_setup(
        "    components:\n      - { name: a, behavior: echo }\n      - { name: a, behavior: echo }\n    pipelines:\n      - { name: p, stages: [ { behavior: counter } ] }\n      - { name: q, stages: [ { behavior: forward }, { behavior: forward } ] }\n    topics:\n      - { name: t }\n      - { name: u, subscribe: [b] }\n",
    ));
    let all: Vec<String> = e.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    for needle in [
        "component `a` is declared twice",
        "pipeline `p` has 1 stage(s)",
        "the last stage of pipeline `q` forwards nowhere",
        "topic `t` has no subscribers",
        "no component `b` in the set-up",
    ] {
        assert!(all.contains(needle), "{needle}: {all}");
    }
    let e = one_error(&format!(
        "{}setup:\n  actors:\n    components: [ {{ name: a, behavior: echo }} ]\n",
        catalog(
            FABRIC,
            "    - { name: m, fabric.stream.append: { stream: t/n/s } }\n"
        )
    ));
    assert!(
        e.message
            .contains("cannot tell which service the actor set-up is for"),
        "{e}"
    );
}

#[test]
fn actor_faults_and_checks_are_checked() {
    let base = catalog(
        ACTORS,
        "    - { name: m, actors.send: { component: ingest } }\n",
    );
    let s = load(
        "s.yaml",
        &format!("{base}faults:\n  - {{ at: 1s, for: 1s, actor_panic: actors, component: ingest-2, panic_after: 5, repeat: true }}\n  - {{ at: 3s, actor_stall: actors, component: ingest-2, stall: 2s }}\nchecks: [actors.no_acked_message_lost, actors.no_silent_stall, actors.restarts_bounded]\nreadback: {{ stall_within: 4s }}\n"),
        &[],
    )
    .unwrap();
    assert_eq!(s.stall_within(), std::time::Duration::from_secs(4));
    let w = crate::faults::expand(&s.faults, s.seed);
    assert_eq!(
        w[0].action,
        FaultAction::ActorPanic {
            component: "ingest-2".into(),
            panic_after: 5,
            repeat: true
        }
    );
    assert_eq!(w[0].params["component"], "ingest-2");
    assert_eq!(
        w[1].action,
        FaultAction::ActorStall {
            component: "ingest-2".into(),
            stall: std::time::Duration::from_secs(2)
        }
    );
    assert_eq!(w[1].end, None);
    let err = |f: &str| {
        errors(&format!("{base}faults:\n  - {f}\n"))
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let e = err("{ at: 1s, actor_panic: actors }");
    assert!(e.contains("needs `component:`"), "{e}");
    let e = err("{ at: 1s, actor_stall: actors, component: x }");
    assert!(e.contains("an `actor_stall` needs `for:`"), "{e}");
    let e = err("{ at: 1s, for: 1s, pause: actors, component: x }");
    assert!(
        e.contains("`component` does not apply to a `pause` fault"),
        "{e}"
    );
    let e = err("{ at: 1s, actor_panic: actors, component: x, stall: 1s }");
    assert!(
        e.contains("`stall` does not apply to a `actor_panic` fault")
            || e.contains("`stall` does not apply"),
        "{e}"
    );
}

/// A stack of services (YAML lines under `services:`) with one fabric
/// operation, the fabric included.
fn wired(services: &str) -> String {
    catalog(
        &format!("  services:\n    fabric: {{ kind: fabric }}\n{services}"),
        "    - { name: append, fabric.stream.append: { stream: t/n/s, service: fabric } }\n",
    )
}

#[test]
fn references_and_upstreams_load_and_order_the_boot() {
    let s = load(
        "s.yaml",
        &wired(
            "    lb: { kind: nginx, upstreams: [ts1, ts2] }\n    ts1: { kind: tracing, env: { TRACING_DATABASE_URL: \"postgresql://postgres@{addr:db}/postgres\", TRACING_REDIS_URL: \"redis://{addr:cache}\" } }\n    ts2: { kind: tracing, env: { TRACING_DATABASE_URL: \"postgresql://postgres@{host:db}:{port:db}/postgres\" } }\n    db: { kind: postgres }\n    cache: { kind: redis }\n",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(s.stack.services["lb"].upstreams, ["ts1", "ts2"]);
    assert_eq!(
        wiring::boot_order(&s.stack),
        ["cache", "db", "fabric", "ts1", "ts2", "lb"]
    );
    let links = faults::links(&s);
    for l in [
        "loadgen->lb",
        "lb->ts1",
        "lb->ts2",
        "ts1->db",
        "ts1->cache",
        "ts2->db",
    ] {
        assert!(links.contains(&l.to_owned()), "{l} in {links:?}");
    }
    assert!(!links.contains(&"ts2->cache".to_owned()));
}

#[test]
fn bad_references_are_located_with_a_hint() {
    assert_error(
        &wired(
            "    ts1: { kind: tracing, env: { DB: \"{addr:dbb}\" } }\n    db: { kind: postgres }\n",
        ),
        "s.yaml:5:34",
        "no service `dbb`",
        "did you mean `db`?",
    );
    assert_error(
        &wired(
            "    ts1: { kind: tracing, env: { DB: \"{adr:db}\" } }\n    db: { kind: postgres }\n",
        ),
        "s.yaml:5:34",
        "`{adr:db}` is not a reference",
        "`{addr:db}`",
    );
    assert_error(
        &wired(
            "    a: { command: [x, \"{addr:b}\"] }\n    b: { command: [x, \"--peer={addr:a}\"] }\n",
        ),
        "s.yaml:5:5",
        "cycle: `a` → `b` → `a`",
        "must not reference",
    );
    assert_error(
        &wired("    a: { command: [x, \"{port:a}\"] }\n"),
        "s.yaml:5:23",
        "names the service itself",
        "`{addr}`",
    );
}

#[test]
fn upstreams_are_checked() {
    assert_error(
        &wired("    lb: { kind: nginx, upstreams: [fabric, db] }\n    db: { kind: postgres }\n"),
        "s.yaml:5:44",
        "upstream `db` is `postgres`, which does not serve HTTP",
        "HTTP services",
    );
    assert_error(
        &wired("    lb: { kind: nginx }\n"),
        "s.yaml:5:11",
        "has no `upstreams`",
        "upstreams: [ts1, ts2]",
    );
    assert_error(
        &wired("    x: { kind: actors, upstreams: [fabric] }\n"),
        "s.yaml:5:24",
        "`upstreams` is for `kind: nginx`",
        "remove `upstreams`",
    );
    assert_error(
        &wired("    lb: { kind: nginx, upstreams: [fabric, fabrc] }\n"),
        "s.yaml:5:44",
        "no service `fabrc`",
        "did you mean `fabric`?",
    );
}

#[test]
fn service_links_need_a_reference_and_process_mode() {
    let with_fault =
        |stack_extra: &str, fault: &str| format!("{}faults:\n  - {fault}\n", wired(stack_extra));
    let ts = "    ts1: { kind: tracing, env: { DB: \"{addr:db}\" } }\n    db: { kind: postgres }\n";
    let ok = with_fault(ts, "{ at: 1s, for: 1s, link: ts1->db, latency: 50ms }");
    let s = load("s.yaml", &ok, &[]).unwrap();
    assert_eq!(s.faults[0].target().unwrap().candidates(), ["ts1->db"]);
    let e = one_error(&with_fault(
        ts,
        "{ at: 1s, for: 1s, link: db->ts1, latency: 50ms }",
    ));
    assert!(e.message.contains("no link `db->ts1`"), "{e}");
    assert!(e.hint.unwrap_or_default().contains("ts1->db"));
    let e = one_error(&ok.replace("stack:\n", "stack:\n  runtime: containers\n"));
    assert!(
        e.message
            .contains("link `ts1->db` between two services needs process mode"),
        "{e}"
    );
}

const TRACING: &str = "  services:\n    db: { kind: postgres }\n    cache: { kind: redis }\n    ts1: { kind: tracing }\n    ts2: { kind: tracing }\n    lb: { kind: nginx, upstreams: [ts1, ts2] }";

#[test]
fn every_tracing_action_loads_with_its_defaults() {
    let s = load(
        "s.yaml",
        &catalog(
            TRACING,
            r#"    - { name: record, tracing.record_event: { service: lb, frames: zstd, token: abc.def.ghi, event: { size: 2KiB, large: { share: 5%, size: 64KiB }, types: { MessageSent: 3, DataFlow: 1 } } } }
    - { name: trace, tracing.start_trace: { service: ts1 }, then: [ { tracing.record_event: { events: 10 } }, { tracing.get_trace: {} } ] }
    - { name: query, tracing.query: { service: ts1, flow: "f-{{seq}}", since: 1m, status: running, actor: a, limit: 5 } }
    - { name: fanout, tracing.subscribe: { service: ts1, publish_via: ts2 } }
    - { name: fanout_commit, tracing.subscribe: { service: ts1, publish_via: ts2, from: commit } }
    - { name: sql, postgres.query: { sql: "SELECT $1::int", params: ["{{seq}}"], rows: 1 } }
    - { name: ins, postgres.query: { sql: "INSERT INTO t VALUES ($1::uuid, $7)", params: [x], event: {} } }
    - { name: cmd, redis.command: { command: [SET, "k-{{seq}}", v] } }
"#,
        ),
        &[],
    )
    .unwrap();
    let ops = &s.workload.operations;
    let Action::Tracing(TracingAction::RecordEvent(r)) = &ops[0].action else {
        panic!("{:?}", ops[0].action);
    };
    assert_eq!(r.connection.frames, FrameEncoding::Zstd);
    assert_eq!(r.event.large.as_ref().unwrap().size, Size(64 << 10));
    assert_eq!(ops[1].then[0].name, "record_event");
    assert_eq!(ops[1].then[1].name, "get_trace");
    let Action::Tracing(TracingAction::Subscribe(sub)) = &ops[3].action else {
        panic!("{:?}", ops[3].action);
    };
    assert_eq!(sub.notify_within, Duration::from_secs(2));
    assert_eq!(sub.from, FanoutFrom::Publish);
    let Action::Tracing(TracingAction::Subscribe(sub)) = &ops[4].action else {
        panic!("{:?}", ops[4].action);
    };
    assert_eq!(sub.from, FanoutFrom::Commit);
    let Action::Postgres(q) = &ops[5].action else {
        panic!("{:?}", ops[5].action);
    };
    assert_eq!(
        (q.user.as_str(), q.database.as_str()),
        ("postgres", "postgres")
    );
    // It serialises back to what loads again.
    let again = load("resolved.yaml", &to_yaml(&s), &[]).unwrap();
    assert_eq!(s, again);
}

#[test]
fn tracing_actions_are_checked() {
    let op = |o: &str| catalog(TRACING, &format!("    - {o}\n"));
    let assert_error = |text: &str, message: &str, hint: &str| {
        let e = one_error(text);
        assert!(e.location().starts_with("s.yaml:"), "{e}");
        assert!(e.message.contains(message), "message: {e}");
        assert!(
            e.hint.as_deref().unwrap_or_default().contains(hint),
            "hint: {e}"
        );
    };
    assert_error(
        &op("{ name: m, tracing.record_event: { service: ts1, events: 10 } }"),
        "`events: 10` on an operation",
        "chain it",
    );
    assert_error(
        &op("{ name: m, tracing.get_trace: { service: ts1 } }"),
        "names no `trace`",
        "tracing.start_trace",
    );
    assert_error(
        &op(
            "{ name: m, tracing.record_event: { service: ts1, event: { types: { MesageSent: 1 } } } }",
        ),
        "`MesageSent` is not an event type",
        "did you mean `MessageSent`?",
    );
    assert_error(
        &op("{ name: m, tracing.record_event: { service: ts1, event: { size: 100B } } }"),
        "smaller than its fields",
        "256B",
    );
    assert_error(
        &op(
            "{ name: m, tracing.record_event: { service: ts1, event: { large: { share: 0%, size: 64KiB } } } }",
        ),
        "a share of 0% of large events",
        "e.g. `5%`",
    );
    assert_error(
        &op("{ name: m, tracing.query: { service: ts1, limit: 0 } }"),
        "`limit` 0 is out of range",
        "1 to 10000",
    );
    assert_error(
        &op("{ name: m, tracing.subscribe: { service: ts1, publish_via: ts3 } }"),
        "no service `ts3` in the stack",
        "did you mean `ts",
    );
    assert_error(
        &op("{ name: m, tracing.subscribe: { service: ts1, from: comit } }"),
        "comit",
        "commit",
    );
    assert_error(
        &op("{ name: m, tracing.subscribe: { service: ts1, publish_via: db } }"),
        "service `db` is not a tracing service",
        "nginx",
    );
    assert_error(
        &op("{ name: m, tracing.record_event: { service: db } }"),
        "service `db` is not a tracing service",
        "",
    );
    assert_error(
        &op("{ name: m, tracing.start_trace: { service: ts1, token: \"Bearer x\" } }"),
        "`token` is not a JWT",
        "without `Bearer`",
    );
    assert_error(
        &op("{ name: m, postgres.query: { sql: \"SELECT $2\", params: [a] } }"),
        "names $2, but 1 parameter(s) are given",
        "params",
    );
    assert_error(
        &op("{ name: m, redis.command: { command: [] } }"),
        "an empty command",
        "command: [SET",
    );
    // Two tracing services and no `service:`: which one?
    let e = one_error(&op("{ name: m, tracing.start_trace: {} }"));
    assert!(
        e.message
            .contains("cannot tell which service this tracing operation targets (3 candidates)"),
        "{e}"
    );
}

#[test]
fn postgres_setup_is_checked() {
    let text = format!(
        "{}setup:\n  postgres:\n    service: dbb\n    sql: []\n",
        catalog(
            TRACING,
            "    - { name: m, postgres.query: { sql: \"SELECT 1\" } }\n"
        )
    );
    let errs = errors(&text);
    let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 2, "{all:#?}");
    assert!(
        all[0].contains("no postgres service `dbb`") && all[0].contains("did you mean `db`?"),
        "{all:#?}"
    );
    assert!(all[1].contains("no statement to run"), "{all:#?}");
}

#[test]
fn an_operation_may_target_nginx_in_front_of_its_kind() {
    let text = catalog(
        "  services:\n    f1: { kind: fabric }\n    f2: { kind: fabric }\n    lb: { kind: nginx, upstreams: [f1, f2] }",
        "    - { name: append, fabric.stream.append: { stream: t/n/s, service: lb } }\n",
    );
    load("s.yaml", &text, &[]).unwrap();
    let mixed = text.replace("f2: { kind: fabric }", "f2: { kind: actors }");
    let e = one_error(&mixed);
    assert!(
        e.message.contains("service `lb` is not a fabric service"),
        "{e}"
    );
}
