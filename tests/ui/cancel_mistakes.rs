integration_runtime::integration!("./specs/cancel_mistakes.toml");

fn main() {}
