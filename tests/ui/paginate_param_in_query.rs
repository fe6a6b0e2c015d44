integration_runtime::integration!("./specs/paginate_param_in_query.toml");

fn main() {}
