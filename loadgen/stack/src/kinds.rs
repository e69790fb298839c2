//! The service kinds, declared in one table that both runtimes read: where
//! the program comes from, its arguments, the port it listens on in a
//! container, how readiness is probed, its default environment and where
//! its data directory goes. A new kind is a variant of
//! [`gauntlet_scenario::ServiceKind`] and one entry of [`KINDS`]; the
//! process stack ([`crate::process`]) and the container stack
//! (`gauntlet-containers`) need no change.
//!
//! Arguments and environment values are templates: `{port}` is the port
//! the service listens on, `{host}` the address it binds (`127.0.0.1` in
//! process mode, `0.0.0.0` in a container), `{addr}` both as `host:port`,
//! `{data_dir}` its data directory (the run's `data/<service>` or `/data`).

use gauntlet_scenario::{Readiness, Service, ServiceKind};

/// Where a kind's program comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// Built from this workspace (`cargo build -p PACKAGE --bin BINARY`) and
    /// shipped in an image of its own, whose entrypoint it is.
    Bundled {
        package: &'static str,
        binary: &'static str,
    },
    /// A Debian package's program: installed on this machine for process
    /// mode (`ci/setup.sh`), and in the base image for containers.
    Debian {
        package: &'static str,
        binary: &'static str,
    },
}

impl Program {
    pub fn binary(self) -> &'static str {
        match self {
            Program::Bundled { binary, .. } | Program::Debian { binary, .. } => binary,
        }
    }

    pub fn package(self) -> &'static str {
        match self {
            Program::Bundled { package, .. } | Program::Debian { package, .. } => package,
        }
    }
}

/// How the harness knows a kind is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `GET path` answers 2xx (a scenario's `ready_path` overrides the path).
    Http(&'static str),
    /// PostgreSQL accepts connections (`pg_isready` in a container, the
    /// protocol's startup exchange in process mode).
    Postgres,
    /// Redis `PING` answers `PONG`.
    Redis,
}

/// One service kind, as both runtimes run it.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub kind: ServiceKind,
    pub program: Program,
    /// Arguments (templates, see the module documentation).
    pub args: &'static [&'static str],
    /// The port it listens on inside a container.
    pub container_port: u16,
    /// An environment variable the program reads its port from, if any.
    pub port_var: Option<&'static str>,
    /// An environment variable the program reads its data directory from, if any.
    pub data_dir_var: Option<&'static str>,
    /// Environment set before the scenario's `env` (which overrides it).
    pub default_env: &'static [(&'static str, &'static str)],
    pub probe: Probe,
    /// Whether it serves Prometheus `/metrics` (scraped every second).
    pub metrics: bool,
    /// Containers: the user it runs as (`None`: the image's).
    pub container_user: Option<&'static str>,
    /// Containers: a `bash -c` script run instead of the program (set-up
    /// before `exec`), with the same placeholders.
    pub container_script: Option<&'static str>,
    /// Process mode: why this kind cannot run as a local process, with a
    /// hint (`None`: it can).
    pub process_unavailable: Option<&'static str>,
    /// Process mode: what it needs besides its program and arguments.
    pub process: ProcessSetup,
    /// A configuration file generated per run (nginx's), written into the
    /// data directory before the first start.
    pub config: Option<ConfigFile>,
}

/// A configuration file a kind gets generated per run: in process mode
/// written to `path` in the data directory; in a container handed over in
/// the environment variable [`CONFIG_VAR`], which the kind's start script
/// writes to `path`.
#[derive(Debug, Clone, Copy)]
pub struct ConfigFile {
    /// Relative to the data directory.
    pub path: &'static str,
    pub render: fn(&ConfigInput) -> String,
}

/// What a generated configuration is made from.
#[derive(Debug, Clone)]
pub struct ConfigInput {
    /// `host:port` the service listens on.
    pub listen: String,
    /// The `host:port` of each of its `upstreams`, as it reaches them.
    pub upstreams: Vec<String>,
}

/// The environment variable a container's start script finds its
/// generated configuration in.
pub const CONFIG_VAR: &str = "GAUNTLET_CONFIG";

/// Process mode: the set-up of a kind that needs more than its program
/// started with its arguments. Every command here is a program and its
/// arguments (templates, see the module documentation), looked up like the
/// kind's program, and runs as the same user as the service.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSetup {
    /// Directories searched for the programs after `PATH` (Debian installs
    /// PostgreSQL's server programs off `PATH`).
    pub program_dirs: &'static [&'static str],
    /// The unprivileged user it runs as when the harness runs as root
    /// (`None`: as the harness's user). Its data directory is chowned to
    /// it; see [`crate::process`] for how it reaches the run directory.
    pub user_when_root: Option<&'static str>,
    /// Directories made in the data directory before the first start.
    pub dirs: &'static [&'static str],
    /// Run once per data directory before the first start, skipped when
    /// the data directory holds [`Init::done_when`] (a restart keeps its data).
    pub init: Option<Init>,
    /// The graceful stop, instead of SIGTERM to the process; SIGKILL to
    /// the whole process tree still follows when the stop timeout passes.
    pub stop: Option<&'static [&'static str]>,
}

/// A one-time initialisation of a service's data directory.
#[derive(Debug, Clone, Copy)]
pub struct Init {
    pub command: &'static [&'static str],
    /// A file, relative to the data directory, that exists once it ran.
    pub done_when: &'static str,
}

impl ProcessSetup {
    /// Nothing beyond the program: started with its arguments, SIGTERM to stop.
    pub const PLAIN: ProcessSetup = ProcessSetup {
        program_dirs: &[],
        user_when_root: None,
        dirs: &[],
        init: None,
        stop: None,
    };
}

/// Where Debian's `postgresql-15` puts `initdb`, `pg_ctl` and `postgres`.
pub const POSTGRES_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// How a client connects to a `postgres` service, in both runtimes: this
/// user and database, trusted (no password) from loopback in process mode
/// and from the run's network in a container.
pub const POSTGRES_USER: &str = "postgres";
pub const POSTGRES_DATABASE: &str = "postgres";

/// PostgreSQL in a container: a cluster initialised on the data volume at
/// the first start, then the server in the foreground.
const POSTGRES_START: &str = "set -e
if [ ! -s {data_dir}/pgdata/PG_VERSION ]; then
  initdb -D {data_dir}/pgdata -U postgres --auth=trust --no-locale -E UTF8 >/dev/null
  echo 'host all all all trust' >> {data_dir}/pgdata/pg_hba.conf
fi
exec postgres -D {data_dir}/pgdata -c listen_addresses='*' -p \"$PGPORT\" -k /tmp";

/// nginx in a container: the generated configuration (in [`CONFIG_VAR`])
/// written to the data volume, then nginx in the foreground.
const NGINX_START: &str = "set -e
mkdir -p {data_dir}/temp
printf '%s' \"$GAUNTLET_CONFIG\" > {data_dir}/nginx.conf
exec nginx -p {data_dir}/ -c {data_dir}/nginx.conf -e stderr";

/// nginx's configuration: seed 003's `nginx.conf` without TLS (one
/// upstream block of the service's `upstreams`, round robin with
/// keep-alive connections; HTTP/1.1 to them with the WebSocket upgrade
/// passed through; the client's address in `X-Real-IP` and
/// `X-Forwarded-For`), listening on the service's address, in the
/// foreground, its pid file and temp directories in its data directory,
/// errors to its log. One process (`master_process off`; the seed's one
/// worker): a master's workers do not get the parent-death signal the
/// harness gives its children, so a killed loadgen would leave them
/// serving. Two changes from the seed: `Connection` is `upgrade`
/// only when the client asks for an upgrade (empty otherwise, so plain
/// requests reuse the `keepalive` connections, which the seed's constant
/// `upgrade` defeats), and proxied reads and sends may idle for an hour (a
/// quiet subscription is not cut after nginx's default 60 s).
pub fn nginx_conf(input: &ConfigInput) -> String {
    let servers: String = input
        .upstreams
        .iter()
        .map(|u| format!("        server {u};\n"))
        .collect();
    format!(
        "# Generated by Gauntlet from seed 003's nginx.conf (without TLS).
daemon off;
master_process off;
pid nginx.pid;
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' '';
    }}

    upstream tracing_backend {{
{servers}        keepalive 32;
    }}

    server {{
        listen {listen};

        location = /nginx_status {{
            stub_status;
        }}

        location / {{
            proxy_pass http://tracing_backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
",
        listen = input.listen
    )
}

/// HAProxy in a container: the generated configuration (in
/// [`CONFIG_VAR`]) written to the data volume, then HAProxy in the
/// foreground.
const HAPROXY_START: &str = "set -e
printf '%s' \"$GAUNTLET_CONFIG\" > {data_dir}/haproxy.cfg
exec haproxy -W -f {data_dir}/haproxy.cfg -db -p {data_dir}/haproxy.pid";

/// HAProxy's configuration: seed 004's cluster load balancer — TCP mode,
/// round robin over the service's `upstreams`, `check inter 2s rise 2
/// fall 3`, the seed's timeouts and `maxconn` — listening on the
/// service's address. Two changes from the seed: the health check asks
/// `GET /ready` for a 200 (`option httpchk`) where the seed's
/// `option tcp-check` only connects, so a node that drains (503) or has
/// not restored its registry yet is taken out; the log goes to stderr
/// (the service's log) instead of `/dev/log`; and `maxconn` is 9000, not
/// 10000: HAProxy needs two descriptors per connection plus a few, and
/// 10000 asks for 20,019 where this machine's and Docker's default
/// limit is 20,000 (HAProxy then refuses to start). `hard-stop-after 3s`
/// bounds the soft stop the harness asks for (SIGUSR1), since a client's
/// idle keep-alive connection would otherwise hold it for `timeout client`.
pub fn haproxy_conf(input: &ConfigInput) -> String {
    let servers: String = input
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| {
            format!(
                "    server node{} {u} check inter 2s rise 2 fall 3\n",
                i + 1
            )
        })
        .collect();
    format!(
        "# Generated by Gauntlet from seed 004's HAProxy configuration.
global
    maxconn 9000
    log stderr format raw local0
    hard-stop-after 3s

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    log global
    option tcplog

frontend network_protocol_frontend
    bind {listen}
    default_backend network_protocol_backend

backend network_protocol_backend
    balance roundrobin
    option httpchk GET /ready
    http-check expect status 200
{servers}",
        listen = input.listen
    )
}

/// Every kind Gauntlet knows, one entry each.
pub const KINDS: &[KindSpec] = &[
    KindSpec {
        kind: ServiceKind::Fabric,
        program: Program::Bundled {
            package: "fabric",
            binary: "fabric-node",
        },
        args: &["--http-addr", "{addr}", "--data-dir", "{data_dir}"],
        container_port: 8080,
        port_var: None,
        data_dir_var: None,
        default_env: &[],
        probe: Probe::Http("/ready"),
        metrics: true,
        container_user: None,
        container_script: None,
        process_unavailable: None,
        process: ProcessSetup::PLAIN,
        config: None,
    },
    KindSpec {
        kind: ServiceKind::Actors,
        program: Program::Bundled {
            package: "actors",
            binary: "actor-node",
        },
        args: &[
            "--bind",
            "{host}",
            "--http-port",
            "{port}",
            "--metrics-port",
            "{port}",
            "--data-dir",
            "{data_dir}",
        ],
        container_port: 8080,
        port_var: None,
        data_dir_var: None,
        // The test-only fault endpoint, for `actor_panic` and `actor_stall`.
        default_env: &[("AIRSSYS_TEST_FAULTS", "1"), ("AIRSSYS_LOG_LEVEL", "info")],
        probe: Probe::Http("/ready"),
        metrics: true,
        container_user: None,
        container_script: None,
        process_unavailable: None,
        process: ProcessSetup::PLAIN,
        config: None,
    },
    KindSpec {
        kind: ServiceKind::Postgres,
        program: Program::Debian {
            package: "postgresql-15",
            binary: "postgres",
        },
        // Process mode (a container runs POSTGRES_START instead): the
        // cluster `initdb` made, on loopback only (trusted there).
        args: &[
            "-D",
            "{data_dir}/pgdata",
            "-c",
            "listen_addresses={host}",
            "-p",
            "{port}",
            "-k",
            "../socket",
        ],
        container_port: 5432,
        port_var: Some("PGPORT"),
        data_dir_var: None,
        // What a client needs besides host and port (libpq's names).
        default_env: &[("PGUSER", POSTGRES_USER), ("PGDATABASE", POSTGRES_DATABASE)],
        probe: Probe::Postgres,
        metrics: false,
        container_user: Some("postgres"),
        container_script: Some(POSTGRES_START),
        process_unavailable: None,
        process: ProcessSetup {
            program_dirs: &[POSTGRES_BIN_DIR],
            // PostgreSQL refuses to run as root; the Debian package
            // creates this user.
            user_when_root: Some("postgres"),
            // The unix socket's directory (`-k ../socket`, relative to the
            // cluster: the run directory's path may be longer than a
            // socket path may be).
            dirs: &["socket"],
            init: Some(Init {
                command: &[
                    "initdb",
                    "-D",
                    "{data_dir}/pgdata",
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-locale",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                done_when: "pgdata/PG_VERSION",
            }),
            stop: Some(&[
                "pg_ctl",
                "stop",
                "-D",
                "{data_dir}/pgdata",
                "-m",
                "fast",
                "-w",
            ]),
        },
        config: None,
    },
    KindSpec {
        kind: ServiceKind::Redis,
        program: Program::Debian {
            package: "redis-server",
            binary: "redis-server",
        },
        args: &[
            "--bind",
            "{host}",
            "--protected-mode",
            "no",
            "--port",
            "{port}",
            "--dir",
            "{data_dir}",
            "--daemonize",
            "no",
        ],
        container_port: 6379,
        port_var: None,
        data_dir_var: None,
        default_env: &[],
        probe: Probe::Redis,
        metrics: false,
        container_user: Some("redis"),
        container_script: None,
        process_unavailable: None,
        process: ProcessSetup::PLAIN,
        config: None,
    },
    KindSpec {
        kind: ServiceKind::Tracing,
        program: Program::Bundled {
            package: "tracing-server",
            binary: "tracing-server",
        },
        args: &[],
        container_port: 8080,
        port_var: None,
        data_dir_var: None,
        default_env: &[("TRACING_BIND_ADDRESS", "{addr}")],
        probe: Probe::Http("/ready"),
        metrics: true,
        container_user: None,
        container_script: None,
        process_unavailable: None,
        process: ProcessSetup::PLAIN,
        config: None,
    },
    KindSpec {
        kind: ServiceKind::Nginx,
        program: Program::Debian {
            package: "nginx-light",
            binary: "nginx",
        },
        // The configuration is generated per run into the data directory
        // (`nginx_conf`); `-p` makes its relative paths (pid file, temp
        // directories) land there, `-e stderr` keeps nginx off
        // /var/log/nginx before it reads the configuration.
        args: &[
            "-p",
            "{data_dir}/",
            "-c",
            "{data_dir}/nginx.conf",
            "-e",
            "stderr",
        ],
        container_port: 8080,
        port_var: None,
        data_dir_var: None,
        default_env: &[],
        // Proxied to an upstream: ready once it forwards.
        probe: Probe::Http("/ready"),
        metrics: false,
        container_user: Some("www-data"),
        container_script: Some(NGINX_START),
        process_unavailable: None,
        process: ProcessSetup {
            program_dirs: &["/usr/sbin"],
            // Not root (its workers would be `nobody`, who cannot reach a
            // run directory under 0700 parents): Debian's web user, which
            // owns the data directory and, with the ambient
            // CAP_DAC_READ_SEARCH every such user keeps, reaches it.
            user_when_root: Some("www-data"),
            dirs: &["temp"],
            init: None,
            stop: None,
        },
        config: Some(ConfigFile {
            path: "nginx.conf",
            render: nginx_conf,
        }),
    },
    KindSpec {
        kind: ServiceKind::Reflow,
        program: Program::Bundled {
            package: "reflow-node",
            binary: "reflow-node",
        },
        args: &[],
        container_port: 8080,
        port_var: None,
        data_dir_var: None,
        // The 3-stage pipeline built into the node unless the scenario
        // names a graph (`REFLOW_GRAPH__FILE`, or `REFLOW_GRAPH__INLINE`:
        // the graph as JSON); the test-only fault endpoint, for
        // `reflow_actor_panic`; tracing off unless the scenario turns it on.
        default_env: &[
            ("REFLOW_NETWORK__BIND_ADDRESS", "{addr}"),
            ("REFLOW_GRAPH__FILE", "builtin:pipeline"),
            ("REFLOW_TEST__FAULT_ENDPOINT", "true"),
        ],
        probe: Probe::Http("/ready"),
        metrics: true,
        container_user: None,
        container_script: None,
        process_unavailable: None,
        process: ProcessSetup::PLAIN,
        config: None,
    },
    KindSpec {
        kind: ServiceKind::Haproxy,
        program: Program::Debian {
            package: "haproxy",
            binary: "haproxy",
        },
        // `-W -db`: master and one worker in the foreground; the master
        // writes its pid (`-p`, for the stop below), and a worker exits
        // when its master dies (the harness kills the process group).
        args: &[
            "-W",
            "-f",
            "{data_dir}/haproxy.cfg",
            "-db",
            "-p",
            "{data_dir}/haproxy.pid",
        ],
        container_port: 8080,
        port_var: None,
        data_dir_var: None,
        default_env: &[],
        // Forwarded to an upstream: ready once it forwards.
        probe: Probe::Http("/ready"),
        metrics: false,
        container_user: None,
        container_script: Some(HAPROXY_START),
        process_unavailable: None,
        process: ProcessSetup {
            program_dirs: &["/usr/sbin"],
            user_when_root: None,
            dirs: &[],
            init: None,
            // SIGTERM is HAProxy's hard stop (it dies of the signal);
            // SIGUSR1 its soft stop: stop listening, let connections end
            // (at most `hard-stop-after`), exit 0.
            stop: Some(&["sh", "-c", "kill -USR1 \"$(cat {data_dir}/haproxy.pid)\""]),
        },
        config: Some(ConfigFile {
            path: "haproxy.cfg",
            render: haproxy_conf,
        }),
    },
];

/// The table's entry of `kind`.
pub fn spec(kind: ServiceKind) -> &'static KindSpec {
    KINDS
        .iter()
        .find(|s| s.kind == kind)
        .expect("every ServiceKind has an entry in KINDS (a test checks it)")
}

/// The program of `kind` (the bundled binary or the Debian program).
pub fn binary(kind: ServiceKind) -> &'static str {
    spec(kind).program.binary()
}

/// Built from this workspace and shipped in an image of its own (the
/// others run from the base image).
pub fn is_bundled(kind: ServiceKind) -> bool {
    matches!(spec(kind).program, Program::Bundled { .. })
}

/// Replaces the placeholders of an argument or environment value.
pub fn substitute(text: &str, host: &str, port: u16, data_dir: &str) -> String {
    text.replace("{port}", &port.to_string())
        .replace("{addr}", &format!("{host}:{port}"))
        .replace("{host}", host)
        .replace("{data_dir}", data_dir)
}

/// Where a service reaches the services it references, by name: host and
/// port (see [`gauntlet_scenario::wiring`]).
pub type Peers = std::collections::BTreeMap<String, (String, u16)>;

/// [`substitute`], then the references to other services (`{addr:NAME}`,
/// `{host:NAME}`, `{port:NAME}`) from `peers`.
pub fn substitute_with(text: &str, host: &str, port: u16, data_dir: &str, peers: &Peers) -> String {
    let text = gauntlet_scenario::wiring::resolve(text, &|name| peers.get(name).cloned());
    substitute(&text, host, port, data_dir)
}

/// The generated configuration of `svc` (its kind's [`ConfigFile`]), if any:
/// where it goes in the data directory and its text.
pub fn config(svc: &Service, listen: &str, peers: &Peers) -> Option<(&'static str, String)> {
    let file = svc.kind.and_then(|k| spec(k).config)?;
    let input = ConfigInput {
        listen: listen.to_owned(),
        upstreams: svc
            .upstreams
            .iter()
            .filter_map(|u| peers.get(u).map(|(h, p)| format!("{h}:{p}")))
            .collect(),
    };
    Some((file.path, (file.render)(&input)))
}

/// How the harness knows `svc` is ready: its kind's probe, or `GET
/// ready_path` (default `/ready`) for an HTTP kind or any other service.
pub fn readiness(svc: &Service) -> Readiness {
    let path = |default: &str| svc.ready_path.clone().unwrap_or_else(|| default.to_owned());
    match svc.kind.map(|k| spec(k).probe) {
        Some(Probe::Postgres) => Readiness::Postgres,
        Some(Probe::Redis) => Readiness::Redis,
        Some(Probe::Http(p)) => Readiness::Http(path(p)),
        None => Readiness::Http(path(gauntlet_scenario::DEFAULT_READY_PATH)),
    }
}

/// The port `svc` listens on inside a container: its `port:`, else its
/// kind's, else 8080.
pub fn container_port(svc: &Service) -> u16 {
    svc.port
        .unwrap_or_else(|| svc.kind.map_or(8080, |k| spec(k).container_port))
}

/// The environment of `svc`: its kind's defaults and port variable, then
/// the scenario's `env` (which wins), placeholders replaced.
pub fn environment(
    svc: &Service,
    host: &str,
    port: u16,
    data_dir: &str,
    peers: &Peers,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v));
    };
    if let Some(spec) = svc.kind.map(spec) {
        for (k, v) in spec.default_env {
            set(k, substitute(v, host, port, data_dir));
        }
        if let Some(var) = spec.port_var {
            set(var, port.to_string());
        }
        if let Some(var) = spec.data_dir_var {
            set(var, data_dir.to_owned());
        }
        // Every bundled binary serves `/debug/pprof/profile`
        // (`pprof-endpoint`), on in Gauntlet's runs.
        if matches!(spec.program, Program::Bundled { .. }) {
            set("PPROF_ENABLED", "1".to_owned());
        }
    }
    for (k, v) in &svc.env {
        set(k, substitute_with(v, host, port, data_dir, peers));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_kinds_serve_pprof() {
        // The scenario's `profile:` rules and the environment agree.
        for kind in ServiceKind::ALL {
            assert_eq!(
                gauntlet_scenario::profiling::serves_pprof(kind),
                is_bundled(kind),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn every_kind_has_one_entry() {
        for kind in ServiceKind::ALL {
            assert_eq!(
                KINDS.iter().filter(|s| s.kind == kind).count(),
                1,
                "{kind:?}"
            );
            assert_eq!(spec(kind).kind, kind);
            assert!(!spec(kind).program.binary().is_empty());
        }
        assert_eq!(KINDS.len(), ServiceKind::ALL.len());
    }

    #[test]
    fn references_and_the_nginx_configuration_use_the_peers() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "kind": "nginx",
            "upstreams": ["a", "b"],
            "env": { "X": "http://{addr:a}/{port}" }
        }))
        .unwrap();
        let peers = Peers::from([
            ("a".to_owned(), ("10.0.0.1".to_owned(), 81)),
            ("b".to_owned(), ("b".to_owned(), 8080)),
        ]);
        let env = environment(&svc, "0.0.0.0", 8080, "/data", &peers);
        assert!(env.contains(&("X".to_owned(), "http://10.0.0.1:81/8080".to_owned())));
        let (path, conf) = config(&svc, "0.0.0.0:8080", &peers).unwrap();
        assert_eq!(path, "nginx.conf");
        for line in [
            "daemon off;",
            "master_process off;",
            "server 10.0.0.1:81;",
            "server b:8080;",
            "keepalive 32;",
            "listen 0.0.0.0:8080;",
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_set_header X-Real-IP $remote_addr;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "client_body_temp_path temp/client_body;",
        ] {
            assert!(conf.contains(line), "{line} in\n{conf}");
        }
        assert!(!conf.contains("ssl"), "{conf}");
        let fabric: Service =
            serde_json::from_value(serde_json::json!({ "kind": "fabric" })).unwrap();
        assert!(config(&fabric, "x:1", &peers).is_none());
    }

    #[test]
    fn placeholders_are_replaced() {
        assert_eq!(
            substitute(
                "{addr} {host}:{port} {data_dir}/x",
                "0.0.0.0",
                8080,
                "/data"
            ),
            "0.0.0.0:8080 0.0.0.0:8080 /data/x"
        );
    }

    #[test]
    fn the_scenario_env_overrides_the_kind_defaults() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "kind": "postgres",
            "env": { "PGPORT": "1", "X": "{port}" }
        }))
        .unwrap();
        let env = environment(&svc, "0.0.0.0", 5432, "/data", &Peers::new());
        assert!(env.contains(&("PGPORT".to_owned(), "1".to_owned())));
        assert!(env.contains(&("X".to_owned(), "5432".to_owned())));
        assert_eq!(env.iter().filter(|(k, _)| k == "PGPORT").count(), 1);
    }

    #[test]
    fn readiness_follows_the_kind() {
        let parse = |v| serde_json::from_value::<Service>(v).unwrap();
        assert_eq!(
            readiness(&parse(
                serde_json::json!({ "kind": "redis", "ready_path": "/x" })
            )),
            Readiness::Redis
        );
        assert_eq!(
            readiness(&parse(serde_json::json!({ "kind": "fabric" }))),
            Readiness::Http("/ready".to_owned())
        );
        assert_eq!(
            readiness(&parse(
                serde_json::json!({ "command": ["x"], "ready_path": "/h" })
            )),
            Readiness::Http("/h".to_owned())
        );
        assert_eq!(
            container_port(&parse(serde_json::json!({ "kind": "redis" }))),
            6379
        );
        assert_eq!(
            container_port(&parse(serde_json::json!({ "kind": "postgres" }))),
            5432
        );
        assert_eq!(
            container_port(&parse(serde_json::json!({ "kind": "fabric" }))),
            8080
        );
        assert_eq!(
            readiness(&parse(serde_json::json!({ "kind": "actors" }))),
            Readiness::Http("/ready".to_owned())
        );
        assert_eq!(
            container_port(&parse(serde_json::json!({ "image": "web:1", "port": 80 }))),
            80
        );
        assert_eq!(
            readiness(&parse(serde_json::json!({ "kind": "postgres" }))),
            Readiness::Postgres
        );
    }
}
