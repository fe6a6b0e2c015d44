integration_runtime::integration!("./specs/tmp_entity_self.toml");

fn main() {}
