//! SASL authentication over the binary protocol (`memcached -S`): the
//! PLAIN mechanism, the one every SASL server can check against its
//! password database. (PLAIN sends the password as it is: use TLS when
//! the network is not trusted.)

use super::binary::{BinaryConn, op, refusal, status};
use super::conn::ConnError;

/// The mechanism used.
const PLAIN: &str = "PLAIN";

/// Lists the server's mechanisms, then authenticates with PLAIN: a
/// refusal is a [`ConnError::Server`] naming the user (never the password).
pub(crate) fn authenticate(conn: &mut BinaryConn, user: &str, password: &str) -> Result<(), ConnError> {
    let mechs = conn.call(op::SASL_LIST_MECHS, &[], &[])?;
    match mechs.header.status {
        status::OK => {}
        status::UNKNOWN_COMMAND => {
            return Err(ConnError::Server(
                "the server does not do SASL (start memcached with -S), yet `sasl = true`".into(),
            ));
        }
        _ => return Err(refusal(&mechs)),
    }
    let offered = String::from_utf8_lossy(&mechs.value).into_owned();
    if !offered.split_whitespace().any(|m| m.eq_ignore_ascii_case(PLAIN)) {
        return Err(ConnError::Server(format!(
            "the server offers the SASL mechanisms [{offered}], not PLAIN: add `mech_list: plain` \
             to its SASL configuration (memcached.conf in SASL_CONF_PATH)"
        )));
    }
    let reply = conn.call(op::SASL_AUTH, PLAIN.as_bytes(), &plain_message(user, password))?;
    match reply.header.status {
        status::OK => Ok(()),
        status::AUTH_ERROR => Err(ConnError::Server(format!(
            "SASL authentication as {user:?} refused; check `username`/`password` against the server's \
             SASL database (saslpasswd2 -a memcached)"
        ))),
        _ => Err(refusal(&reply)),
    }
}

/// PLAIN's message (RFC 4616): no authorization identity, the user, the
/// password, separated by NUL.
fn plain_message(user: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(user.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(user.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_is_nul_separated() {
        assert_eq!(plain_message("app", "pw"), b"\0app\0pw");
    }
}
