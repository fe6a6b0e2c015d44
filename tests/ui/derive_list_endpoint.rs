#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_list_endpoint.toml", endpoint = "list_voices")]
struct Filter {
    language: String,
}

fn main() {}
