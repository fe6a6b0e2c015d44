integration_runtime::integration!("./specs/three_mistakes.toml");

fn main() {}
