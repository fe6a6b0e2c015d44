integration_runtime::integration!("./specs/deadline_mistakes.toml");

fn main() {}
