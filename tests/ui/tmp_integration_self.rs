integration_runtime::integration!("./specs/tmp_integration_self.toml");

fn main() {}
