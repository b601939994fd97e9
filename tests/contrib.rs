//! What contrib/ ships and this machine cannot run, checked as far as it
//! can be: the Dockerfile copies files that exist and runs as a non-root
//! user; the Kubernetes sidecar example parses as YAML (through python3
//! and PyYAML; skipped, saying so, without them), lists files that exist,
//! mounts what its configuration reads, probes the port it serves, and its
//! configuration passes `churnstile check-config`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_churnstile");
const KUBERNETES: &str = "contrib/kubernetes";

#[test]
fn the_dockerfile_copies_existing_files_and_runs_as_non_root() {
    let dockerfile = std::fs::read_to_string("contrib/Dockerfile").unwrap();
    let mut copied = 0;
    for line in dockerfile.lines().filter(|line| line.starts_with("COPY ")) {
        if line.starts_with("COPY --from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(Path::new(source).exists(), "{line}: {source} is missing");
            copied += 1;
        }
    }
    assert!(copied >= 4, "{dockerfile}");
    let user = dockerfile
        .lines()
        .rfind(|line| line.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
}

/// Every document of a YAML file, as JSON; `None` when python3 or PyYAML
/// is missing.
fn yaml_documents(path: &Path) -> Option<Vec<Value>> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'yaml'") {
        return None;
    }
    assert!(output.status.success(), "{}: {stderr}", path.display());
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// The one manifest of `kind` among `manifests`.
fn of_kind<'a>(manifests: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = manifests.iter().filter(|m| m["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

#[test]
fn the_kubernetes_sidecar_example_is_consistent() {
    let Some(kustomization) = yaml_documents(&Path::new(KUBERNETES).join("kustomization.yaml"))
    else {
        eprintln!("skipped: python3 with PyYAML is needed to parse the manifests");
        return;
    };
    let mut manifests = Vec::new();
    for resource in kustomization[0]["resources"].as_array().unwrap() {
        let path = Path::new(KUBERNETES).join(resource.as_str().unwrap());
        assert!(path.exists(), "{} is missing", path.display());
        manifests.extend(yaml_documents(&path).unwrap());
    }
    let config_map = of_kind(&manifests, "ConfigMap");
    let secret = of_kind(&manifests, "Secret");
    let pod = &of_kind(&manifests, "Deployment")["spec"]["template"]["spec"];
    let sidecar = &pod["initContainers"][0];
    assert_eq!(sidecar["name"], "churnstile");
    assert_eq!(sidecar["restartPolicy"], "Always");

    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| {
        (volumes.iter().find(|volume| volume["name"] == name))
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount = |path: &str| {
        let mounts = sidecar["volumeMounts"].as_array().unwrap();
        (mounts
            .iter()
            .find(|mount| path.starts_with(mount["mountPath"].as_str().unwrap())))
        .unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let config_path = sidecar["args"][1].as_str().unwrap();
    let config_mount = mount(config_path);
    let config_volume = volume(config_mount["name"].as_str().unwrap());
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    let config_key = config_mount["subPath"].as_str().unwrap();
    let config_text = config_map["data"][config_key].as_str().unwrap();

    let password_file = (config_text.lines())
        .find_map(|line| line.strip_prefix("password_file = "))
        .unwrap()
        .trim_matches('"');
    let secret_volume = volume(mount(password_file)["name"].as_str().unwrap());
    assert_eq!(
        secret_volume["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let secret_key = Path::new(password_file)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(secret["stringData"][secret_key].is_string(), "{secret_key}");

    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        config_text.contains("metrics_listen = \"0.0.0.0:9127\""),
        "{config_text}"
    );
    assert_eq!(sidecar["ports"][0]["containerPort"], 9127);
    let pre_stop = sidecar["lifecycle"]["preStop"]["exec"]["command"].to_string();
    assert!(pre_stop.contains("kill -TERM 1"), "{pre_stop}");
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 30);

    // The configuration passes check-config once the Secret's file exists.
    let dir = tempfile::tempdir().unwrap();
    let local_password = dir.path().join(secret_key);
    std::fs::write(&local_password, "change-me\n").unwrap();
    let local_config = dir.path().join(config_key);
    let text = config_text.replace(password_file, local_password.to_str().unwrap());
    std::fs::write(&local_config, text).unwrap();
    let checked = Command::new(BINARY)
        .arg("check-config")
        .arg(&local_config)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
