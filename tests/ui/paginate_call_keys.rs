integration_runtime::integration!("./specs/paginate_call_keys.toml");

fn main() {}
