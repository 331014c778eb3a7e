"""An LDAP directory as the ``Identity`` seam's second source (DESIGN.md; issue 24, "Identity").

What it promises:

- ``find(name)`` reads the user's entry (at the ``user_dn`` template, or by ``user_filter`` under
  ``user_base``) and the groups under ``group_base`` that hold the entry's DN: each group named in the
  role mapping gives its role. Searches run as the service account (``bind_dn``) or anonymously.
- ``check_password(dn, password)`` binds as the user: True only for a bind the directory accepts. An empty
  password is refused here, before any bind: LDAP takes a simple bind with a name and no password as an
  anonymous bind that succeeds (RFC 4513, 5.1.2, "unauthenticated").
- A directory that does not answer, or refuses the service account, is ``DirectoryUnavailable`` (exit 3).
- Names reach a filter or DN escaped (RFC 4515, RFC 4514), after ``archive.users``' name rule.
"""

from __future__ import annotations

import logging
import math
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ldap3 import BASE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from core.config import Directory
from core.errors import DirectoryUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirectoryEntry:
    """What the directory says about a user: the rules (valid branches, roles) are ``archive.users``'."""

    name: str
    dn: str
    display_name: str | None
    roles: frozenset[str]
    branches: tuple[str, ...]


class LdapDirectory:
    """The directory of ``settings.directory``; every call opens its own connection and closes it."""

    def __init__(self, config: Directory) -> None:
        self.config = config
        parts = urlsplit(config.url)
        secure = parts.scheme == "ldaps"
        tls = None
        if secure or config.start_tls:
            # ldap3's own default checks no certificate: a directory that hears passwords must prove itself
            tls = Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(config.ca_file) if config.ca_file else None,
            )
        self.server = Server(
            parts.hostname or "",
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            get_info="NO_INFO",
            connect_timeout=config.timeout,
        )
        self._group_roles = {group.lower(): role for role, group in config.roles}

    def describe(self) -> str:
        return self.config.url

    def _connection(self, user: str | None, password: str | None) -> Connection:
        connection = Connection(
            self.server,
            user=user,
            password=password,
            read_only=True,
            # whole seconds: ldap3 packs it into the socket's SO_RCVTIMEO as an integer
            receive_timeout=max(1, math.ceil(self.config.timeout)),
            raise_exceptions=False,
        )
        try:
            connection.open()
            if self.config.start_tls:
                connection.start_tls()
        except LDAPException as e:
            if "certificate" in str(e).lower():
                raise DirectoryUnavailable(
                    f"the LDAP directory at {self.config.url} presented a certificate that is not trusted "
                    f"for that name: {e}",
                    hint="set [identity] ca_file to the directory's CA; use the host name it was issued for",
                ) from e
            raise DirectoryUnavailable(
                f"the LDAP directory at {self.config.url} does not answer: {e}",
                hint="check [identity] ldap_url, the network and the directory server",
            ) from e
        return connection

    def _service(self) -> Connection:
        """A connection bound as the service account (or anonymous), for searches."""
        connection = self._connection(self.config.bind_dn, self.config.bind_password)
        try:
            bound = connection.bind()
        except LDAPException as e:
            connection.unbind()
            raise DirectoryUnavailable(f"the LDAP directory at {self.config.url} does not answer: {e}") from e
        if not bound:
            result = connection.result or {}
            connection.unbind()
            raise DirectoryUnavailable(
                f"the LDAP directory at {self.config.url} refused the service account's bind "
                f"({result.get('description', 'refused')})",
                hint="check [identity] bind_dn and its password (ISSUANCE_LDAP_BIND_PASSWORD_FILE)",
            )
        return connection

    def find(self, name: str) -> DirectoryEntry | None:
        """The user's entry and roles, or None when the directory has no such user (or several)."""
        c = self.config
        attributes = [c.display_name_attribute, *([c.branch_attribute] if c.branch_attribute else [])]
        connection = self._service()
        try:
            if c.user_dn is not None:
                base, scope, query = c.user_dn.format(name=escape_rdn(name)), BASE, "(objectClass=*)"
            else:
                base, scope = c.user_base or "", SUBTREE
                query = c.user_filter.format(name=escape_filter_chars(name))
            entries = self._search(connection, base, query, scope, attributes)
            if len(entries) != 1:
                if len(entries) > 1:
                    logger.warning("the LDAP directory holds %d entries for one user name", len(entries))
                return None
            entry = entries[0]
            query = c.group_filter.format(dn=escape_filter_chars(entry["dn"]))
            groups = self._search(connection, c.group_base, query, SUBTREE, [c.group_name_attribute])
        finally:
            connection.unbind()
        roles = {
            self._group_roles[str(value).lower()]
            for group in groups
            for value in _values(group, c.group_name_attribute)
            if str(value).lower() in self._group_roles
        }
        shown = _values(entry, c.display_name_attribute)
        return DirectoryEntry(
            name=name,
            dn=entry["dn"],
            display_name=str(shown[0]) if shown else None,
            roles=frozenset(roles),
            branches=tuple(str(v) for v in _values(entry, c.branch_attribute)) if c.branch_attribute else (),
        )

    def _search(
        self, connection: Connection, base: str, query: str, scope: str, attributes: list[str]
    ) -> list[dict]:
        try:
            connection.search(base, query, search_scope=scope, attributes=attributes)
        except LDAPException as e:
            raise DirectoryUnavailable(f"the LDAP directory at {self.config.url} does not answer: {e}") from e
        result = connection.result or {}
        if result.get("result") == 32:  # noSuchObject: no entry at that DN (or the base is wrong)
            return []
        if result.get("result") not in (0, None):
            raise DirectoryUnavailable(
                f"the LDAP directory at {self.config.url} refused a search under {base}: "
                f"{result.get('description')}",
                hint="check [identity] user_base, group_base and what the service account may read",
            )
        return [r for r in connection.response or [] if r.get("type") == "searchResEntry"]

    def check_password(self, dn: str, password: str) -> bool:
        """Whether the directory accepts ``password`` for ``dn`` (a bind as the user)."""
        if not password:
            return False
        connection = self._connection(dn, password)
        try:
            return bool(connection.bind())
        except LDAPException as e:
            raise DirectoryUnavailable(f"the LDAP directory at {self.config.url} does not answer: {e}") from e
        finally:
            connection.unbind()


def _values(entry: dict, attribute: str | None) -> list[object]:
    if not attribute:
        return []
    found = entry.get("attributes", {}).get(attribute, [])
    return list(found) if isinstance(found, list | tuple) else [found]
