#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_endpoint_without_request.toml", endpoint = "query")]
struct Lookup {
    url: String,
}

fn main() {}
