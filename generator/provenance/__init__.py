"""C2PA provenance for everything sfumato generates: keys, signing, verification.

A small public API, in the manner of c2pa-python's own::

    from generator.provenance import init_keys, SigningIdentity, sign_file, verify_file
    init_keys()                                   # local CA + ES256 signer, keys 0600
    me = SigningIdentity.from_keys_dir()          # or .from_files(cert, key) / .from_callback(fn, chain)
    sign_file("out.mp4", me, generation=GenerationInfo(preset="small", seed=0))
    verify_file("out.mp4").state                  # "Trusted"
"""

from generator.provenance.keys import (
                                       ProvenanceError,
                                       SigningIdentity,
                                       default_keys_dir,
                                       describe_keys,
                                       init_keys,
)
from generator.provenance.manifest import (
                                       GENERATION_LABEL,
                                       GenerationInfo,
                                       SigningOptions,
                                       sign_file,
                                       sign_generated,
)
from generator.provenance.verify import EXIT_CODES, Verification, exit_code, verify_file

__all__ = ["EXIT_CODES", "GENERATION_LABEL", "GenerationInfo", "ProvenanceError", "SigningIdentity",
           "SigningOptions", "Verification", "default_keys_dir", "describe_keys", "exit_code",
           "init_keys", "sign_file", "sign_generated", "verify_file"]
