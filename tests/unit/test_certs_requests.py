"""Certificate requests: what a site asks for, and what the fabric's owner refuses to sign.

A request is signed only if it asks for a peer's name and nothing more; every other request
is refused whole, with one line that says what it asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterlink.certs import check_peer_request, create_fabric, load_fabric
from clusterlink.certs.identity import peer_uri
from clusterlink.certs.issuing import issue_peer_credentials, leaf_key_usage, peer_names
from clusterlink.certs.names import PeerName
from clusterlink.certs.requests import new_peer_request, sign_peer_request
from clusterlink.errors import CertificateError

Builder = x509.CertificateSigningRequestBuilder
SOURCE = "site-b/request.csr"


def pem(builder: Builder, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def peer_request(
    name: str = "site-b", *, subject: list[x509.NameAttribute[str]] | None = None
) -> Builder:
    """What `create peer-key` asks for, as a builder the tests add to."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, name)] if subject is None else subject
    return (
        Builder()
        .subject_name(x509.Name(attributes))
        .add_extension(x509.SubjectAlternativeName(peer_names(name)), critical=False)
    )


def refusal(data: bytes) -> str:
    with pytest.raises(CertificateError) as caught:
        check_peer_request(data, SOURCE)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(SOURCE)
    return message


def extensions_of(cert: x509.Certificate) -> dict[str, object]:
    """The extensions that make the profile, by name (key identifiers aside: they differ)."""
    skip = {x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier}
    return {type(e.value).__name__: e.value for e in cert.extensions if type(e.value) not in skip}


def test_a_request_asks_for_exactly_what_create_peer_cert_issues(tmp_path: Path) -> None:
    create_fabric(tmp_path, "fab")
    ca = load_fabric(tmp_path, "fab")
    request = new_peer_request(PeerName("site-b"))

    peer, csr = check_peer_request(request.csr_pem, SOURCE)
    signed = sign_peer_request(ca, csr, peer)

    made_here = x509.load_pem_x509_certificate(
        issue_peer_credentials(ca, PeerName("site-b")).peer.cert_pem
    )
    assert peer == "site-b"
    assert extensions_of(signed) == extensions_of(made_here)
    assert signed.subject == made_here.subject  # O=<fabric> comes from the fabric
    assert signed.public_key() == csr.public_key()
    signed.verify_directly_issued_by(ca.cert)


def test_the_request_holds_the_public_key_only() -> None:
    request = new_peer_request(PeerName("site-b"))

    assert b"PRIVATE KEY" not in request.csr_pem
    assert b"PRIVATE KEY" in request.key_pem
    key = serialization.load_pem_private_key(request.key_pem, password=None)
    assert x509.load_pem_x509_csr(request.csr_pem).public_key() == key.public_key()


def test_a_request_naming_a_long_peer_leaves_the_common_name_out() -> None:
    name = PeerName(".".join(["a" * 60] * 2))
    peer, csr = check_peer_request(new_peer_request(name).csr_pem, SOURCE)

    assert peer == name
    assert csr.subject == x509.Name([])


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda: pem(
                peer_request().add_extension(
                    x509.BasicConstraints(ca=True, path_length=None), critical=True
                ),
                p256(),
            ),
            "asks to be a certificate authority",
        ),
        (
            lambda: pem(
                peer_request().add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                ),
                p256(),
            ),
            "asks to be a certificate authority",
        ),
        (
            lambda: pem(
                Builder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site-b")]))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [*peer_names("site-b"), x509.DNSName("bank.example")]
                    ),
                    critical=False,
                ),
                p256(),
            ),
            "asks for the names DNS:site-b, URI:urn:clusterlink:peer:site-b, "
            "DNS:bank.example; a peer's request asks for exactly",
        ),
        (
            lambda: pem(
                Builder()
                .subject_name(x509.Name([]))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [x509.DNSName("site-b"), x509.UniformResourceIdentifier(peer_uri("a"))]
                    ),
                    critical=False,
                ),
                p256(),
            ),
            "asks for the names DNS:site-b, URI:urn:clusterlink:peer:a",
        ),
        (
            lambda: pem(
                Builder()
                .subject_name(x509.Name([]))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [x509.UniformResourceIdentifier("urn:clusterlink:admin:site-a")]
                    ),
                    critical=False,
                ),
                p256(),
            ),
            "asks to be an administrator (urn:clusterlink:admin:site-a)",
        ),
        (
            lambda: pem(
                Builder().subject_name(
                    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site-b")])
                ),
                p256(),
            ),
            "asks for no peer name",
        ),
        (
            lambda: pem(
                peer_request(
                    subject=[
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "other-fabric"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "site-b"),
                    ]
                ),
                p256(),
            ),
            "asks for the subject 'CN=site-b,O=other-fabric'; a peer's request names the peer "
            "only (CN=site-b), the fabric sets the rest",
        ),
        (
            lambda: pem(
                peer_request(subject=[x509.NameAttribute(NameOID.COMMON_NAME, "bank")]),
                p256(),
            ),
            "asks for the subject 'CN=bank'",
        ),
        (
            lambda: pem(
                peer_request().add_extension(
                    x509.ExtendedKeyUsage(
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]
                    ),
                    critical=False,
                ),
                p256(),
            ),
            "asks for the key usages codeSigning",
        ),
        (
            lambda: pem(
                peer_request().add_extension(
                    x509.NameConstraints(
                        permitted_subtrees=[x509.DNSName("x")], excluded_subtrees=None
                    ),
                    critical=True,
                ),
                p256(),
            ),
            "asks for the extension nameConstraints, which a peer certificate does not carry",
        ),
        (
            lambda: pem(peer_request(), rsa.generate_private_key(65537, 2048)),
            "holds a RSA key; the fabric issues certificates for ECDSA P-256 keys only",
        ),
        (
            lambda: pem(peer_request(), ec.generate_private_key(ec.SECP384R1())),
            "holds an ECDSA key on curve secp384r1",
        ),
        (
            lambda: pem(
                Builder()
                .subject_name(x509.Name([]))
                .add_extension(x509.SubjectAlternativeName(peer_names("10.0.0.1")), critical=False),
                p256(),
            ),
            "asks for an invalid peer name: peer name '10.0.0.1' must not look like an IPv4",
        ),
        (
            lambda: (
                b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE "
                b"REQUEST-----\n"
            ),
            "is not a PEM certificate request",
        ),
    ],
    ids=[
        "a CA",
        "keyCertSign",
        "another name too",
        "a URI of another peer",
        "an admin identity",
        "no peer name",
        "another fabric's subject",
        "a CN that is not the peer",
        "code signing",
        "an unknown extension",
        "an RSA key",
        "another curve",
        "an IPv4-like name",
        "not a request",
    ],
)
def test_a_request_for_anything_more_than_a_peer_name_is_refused_in_one_line(
    make: Callable[[], bytes], problem: str
) -> None:
    assert problem in refusal(make())


def test_a_request_whose_signature_does_not_match_its_key_is_refused() -> None:
    """A request altered on the way (here: another key put in): its signature no longer
    matches the key it holds."""
    der = x509.load_pem_x509_csr(new_peer_request(PeerName("site-b")).csr_pem).public_bytes(
        serialization.Encoding.DER
    )
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    original = x509.load_der_x509_csr(der).public_key().public_bytes(*spki)
    forged = der.replace(original, p256().public_key().public_bytes(*spki))

    data = x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM)
    assert "is not signed by the key it holds" in refusal(data)


def test_a_request_that_asks_for_no_usages_gets_the_peer_usages_anyway(tmp_path: Path) -> None:
    create_fabric(tmp_path, "fab")
    peer, csr = check_peer_request(
        pem(peer_request().add_extension(leaf_key_usage(), critical=True), p256()), SOURCE
    )

    signed = sign_peer_request(load_fabric(tmp_path, "fab"), csr, peer)

    usages = signed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
