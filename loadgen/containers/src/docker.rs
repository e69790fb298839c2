//! Reaching the Docker engine.

use bollard::Docker;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "no Docker engine is reachable ({detail}); container mode needs one (hint: start the Docker daemon, or check DOCKER_HOST and access to /var/run/docker.sock)"
    )]
    NoEngine { detail: String },
    #[error("Docker: {what} failed: {source}")]
    Api {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl DockerError {
    pub fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
        let what = what.into();
        move |source| DockerError::Api { what, source }
    }
}

/// Connects (DOCKER_HOST or the local socket), negotiates the API version
/// with the engine and pings it.
pub async fn connect() -> Result<Docker, DockerError> {
    let docker = Docker::connect_with_defaults().map_err(|e| DockerError::NoEngine {
        detail: e.to_string(),
    })?;
    let docker = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        docker.negotiate_version(),
    )
    .await
    .map_err(|_| DockerError::NoEngine {
        detail: "the engine did not answer within 10s".to_owned(),
    })?
    .map_err(|e| DockerError::NoEngine {
        detail: e.to_string(),
    })?;
    docker.ping().await.map_err(|e| DockerError::NoEngine {
        detail: e.to_string(),
    })?;
    Ok(docker)
}

/// Whether an API error is "no such object" (404).
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
