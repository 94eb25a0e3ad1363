"""Core ML protobuf modules generated for anekit's reader (tools/gen_coreml_proto.py).

Apple's Core ML specification (BSD-3-Clause, see NOTICE) under the package name
`anekit.coreml.Specification`, so they load beside coremltools' own modules in one process;
they need only the `protobuf` package. Do not edit the *_pb2.py files by hand.
"""
