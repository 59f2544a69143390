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

/// Every complete config in the README (a block with `provider_config`,
/// `providers` or a run.yaml's `server:`) loads and builds.
#[tokio::test]
async fn every_config_in_the_readme_builds() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut checked = 0;
    for block in readme.split("```yaml\n").skip(1) {
        let Some((text, _)) = block.split_once("```") else { continue };
        let complete = text.lines().any(|l| l.starts_with("provider_config:") || l.starts_with("providers:"))
            || text.lines().any(|l| l.starts_with("server:"));
        if !complete {
            continue;
        }
        let mut config = tokengate::Config::parse(text, tokengate::config::Format::Yaml)
            .unwrap_or_else(|e| panic!("a README config does not load: {e}\n{text}"));
        // Relative paths in README examples name files under config/.
        config.file = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join("readme.yaml"));
        let pipeline = config.build(&Registry::with_builtins()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        pipeline.close().await;
        checked += 1;
    }
    assert!(checked >= 2, "README configs found: {checked}");
}
