integration_runtime::integration!("./specs/retry_without_idempotency_key.toml");

fn main() {}
