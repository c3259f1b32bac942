"""Errors of authentication; every 401 carries `WWW-Authenticate: Bearer`."""

from fasttrack.core.errors import Forbidden, Unauthorized


class NotAuthenticated(Unauthorized):
    code = "not_authenticated"
    default_detail = "Send an access token as `Authorization: Bearer <token>`"


class InvalidToken(Unauthorized):
    code = "invalid_token"
    default_detail = "The token is invalid"


class TokenExpired(Unauthorized):
    code = "token_expired"
    default_detail = "The token has expired"


class TokenRevoked(Unauthorized):
    code = "token_revoked"
    default_detail = "The token has been revoked"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    default_detail = "Incorrect e-mail or password"


class AccountDisabled(Forbidden):
    code = "account_disabled"
    default_detail = "This account has been deactivated"
