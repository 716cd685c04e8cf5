"""Key Management Server: issues ECCSI/SAKKE key sets over the 3GPP TS 33.180 interface."""
