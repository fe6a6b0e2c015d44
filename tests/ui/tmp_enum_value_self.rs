integration_runtime::integration!("./specs/tmp_enum_value_self.toml");

fn main() {}
