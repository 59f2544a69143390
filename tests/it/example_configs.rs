//! Every example in config/ loads and builds: the docs cannot rot silently.

use tokengate::{Config, Registry};

#[tokio::test]
async fn every_example_config_builds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut built = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let is_config = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json" | "toml"));
        if !is_config || !path.is_file() {
            continue;
        }
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        match config.build(&Registry::with_builtins()) {
            Ok(provider) => provider.close().await,
            // In-cluster files (the Kubernetes example's CA) exist only inside a pod.
            Err(e) if e.message.contains("/var/run/secrets/") => {}
            Err(e) => panic!("{name} does not build: {e}"),
        }
        built.push(name);
    }
    for expected in
        ["oauth2-jwks.yaml", "oauth2-introspection.yaml", "custom.yaml", "github.yaml", "llama-stack-run.yaml"]
    {
        assert!(built.iter().any(|b| b == expected), "{expected} missing from config/ (built: {built:?})");
    }
}
