"""The shape of ``GET /v1/agent/self``, taken from a real Consul 1.4.0 agent's answer.

The recorded body (``tests/fixtures/recorded/consul-agent-self.json``) is kept as it was;
:func:`agent_self` fills in what differs per lab node (names, ids, addresses, role, counts).
"""

from __future__ import annotations

import json

_RECORDED = (
    '{"Config":{"Datacenter":"dc1","NodeID":"8a4da61d-c21f-0856-c59e-f0cc61308fdb"'
    ',"NodeName":"u1","Revision":"","Server":true,"Version":"1.4.0"},"Coord":{"Adjustment":0'
    ',"Error":1.5,"Height":1e-05,"Vec":[0,0,0,0,0,0,0,0]}'
    ',"DebugConfig":{"ACLAgentMasterToken":"hidden","ACLAgentToken":"hidden"'
    ',"ACLDatacenter":"","ACLDefaultPolicy":"allow","ACLDisabledTTL":"2m0s"'
    ',"ACLDownPolicy":"extend-cache","ACLEnableKeyListPolicy":false,"ACLEnforceVersion8":true'
    ',"ACLMasterToken":"hidden","ACLPolicyTTL":"30s","ACLReplicationToken":"hidden"'
    ',"ACLToken":"hidden","ACLTokenReplication":false,"ACLTokenTTL":"30s","ACLsEnabled":false'
    ',"AEInterval":"1m0s","AdvertiseAddrLAN":"127.0.0.1","AdvertiseAddrWAN":"127.0.0.1"'
    ',"AutopilotCleanupDeadServers":true,"AutopilotDisableUpgradeMigration":false'
    ',"AutopilotLastContactThreshold":"200ms","AutopilotMaxTrailingLogs":250'
    ',"AutopilotRedundancyZoneTag":"","AutopilotServerStabilizationTime":"10s"'
    ',"AutopilotUpgradeVersionTag":"","BindAddr":"127.0.0.1","Bootstrap":false'
    ',"BootstrapExpect":0,"CAFile":"","CAPath":"","CertFile":""'
    ',"CheckDeregisterIntervalMin":"1m0s","CheckReapInterval":"30s"'
    ',"CheckUpdateInterval":"5m0s","Checks":[],"ClientAddrs":["127.0.0.1"]'
    ',"ConnectCAConfig":{},"ConnectCAProvider":"","ConnectEnabled":true'
    ',"ConnectProxyAllowManagedAPIRegistration":false,"ConnectProxyAllowManagedRoot":false'
    ',"ConnectProxyBindMaxPort":20255,"ConnectProxyBindMinPort":20000'
    ',"ConnectProxyDefaultConfig":{},"ConnectProxyDefaultDaemonCommand":[]'
    ',"ConnectProxyDefaultExecMode":"","ConnectProxyDefaultScriptCommand":[]'
    ',"ConnectReplicationToken":"hidden","ConnectSidecarMaxPort":21255'
    ',"ConnectSidecarMinPort":21000,"ConnectTestDisableManagedProxies":false'
    ',"ConsulCoordinateUpdateBatchSize":128,"ConsulCoordinateUpdateMaxBatches":5'
    ',"ConsulCoordinateUpdatePeriod":"100ms","ConsulRaftElectionTimeout":"52ms"'
    ',"ConsulRaftHeartbeatTimeout":"35ms","ConsulRaftLeaderLeaseTimeout":"20ms"'
    ',"ConsulServerHealthInterval":"10ms","DNSARecordLimit":0'
    ',"DNSAddrs":["tcp://127.0.0.1:8600","udp://127.0.0.1:8600"],"DNSAllowStale":true'
    ',"DNSDisableCompression":false,"DNSDomain":"consul.","DNSEnableTruncate":false'
    ',"DNSMaxStale":"87600h0m0s","DNSNodeMetaTXT":true,"DNSNodeTTL":"0s"'
    ',"DNSOnlyPassing":false,"DNSPort":8600,"DNSRecursorTimeout":"2s","DNSRecursors":[]'
    ',"DNSSOA":{"Expire":86400,"Minttl":0,"Refresh":3600,"Retry":600},"DNSServiceTTL":{}'
    ',"DNSUDPAnswerLimit":3,"DataDir":"","Datacenter":"dc1","DevMode":true'
    ',"DisableAnonymousSignature":true,"DisableCoordinates":false'
    ',"DisableHTTPUnprintableCharFilter":false,"DisableHostNodeID":true'
    ',"DisableKeyringFile":true,"DisableRemoteExec":true,"DisableUpdateCheck":false'
    ',"DiscardCheckOutput":false,"DiscoveryMaxStale":"0s","EnableAgentTLSForChecks":false'
    ',"EnableDebug":true,"EnableLocalScriptChecks":false,"EnableRemoteScriptChecks":false'
    ',"EnableSyslog":false,"EnableUI":true,"EncryptKey":"hidden","EncryptVerifyIncoming":true'
    ',"EncryptVerifyOutgoing":true,"GRPCAddrs":["tcp://127.0.0.1:8502"],"GRPCPort":8502'
    ',"GossipLANGossipInterval":"100ms","GossipLANGossipNodes":3'
    ',"GossipLANProbeInterval":"100ms","GossipLANProbeTimeout":"100ms"'
    ',"GossipLANRetransmitMult":4,"GossipLANSuspicionMult":3'
    ',"GossipWANGossipInterval":"100ms","GossipWANGossipNodes":3'
    ',"GossipWANProbeInterval":"100ms","GossipWANProbeTimeout":"100ms"'
    ',"GossipWANRetransmitMult":4,"GossipWANSuspicionMult":3'
    ',"HTTPAddrs":["tcp://127.0.0.1:8500"],"HTTPBlockEndpoints":[],"HTTPPort":8500'
    ',"HTTPResponseHeaders":{},"HTTPSAddrs":[],"HTTPSPort":-1,"KeyFile":"hidden"'
    ',"LeaveDrainTime":"5s","LeaveOnTerm":false,"LogFile":"","LogLevel":"DEBUG"'
    ',"LogRotateBytes":0,"LogRotateDuration":"0s"'
    ',"NodeID":"8a4da61d-c21f-0856-c59e-f0cc61308fdb","NodeMeta":{},"NodeName":"u1"'
    ',"NonVotingServer":false,"PidFile":"","PrimaryDatacenter":""'
    ',"RPCAdvertiseAddr":"tcp://127.0.0.1:8300","RPCBindAddr":"tcp://127.0.0.1:8300"'
    ',"RPCHoldTimeout":"7s","RPCMaxBurst":1000,"RPCProtocol":2,"RPCRateLimit":-1'
    ',"RaftProtocol":0,"RaftSnapshotInterval":"0s","RaftSnapshotThreshold":0'
    ',"ReconnectTimeoutLAN":"0s","ReconnectTimeoutWAN":"0s","RejoinAfterLeave":false'
    ',"RetryJoinIntervalLAN":"30s","RetryJoinIntervalWAN":"30s","RetryJoinLAN":[]'
    ',"RetryJoinMaxAttemptsLAN":0,"RetryJoinMaxAttemptsWAN":0,"RetryJoinWAN":[],"Revision":""'
    ',"SegmentLimit":64,"SegmentName":"","SegmentNameLimit":64,"Segments":[]'
    ',"SerfAdvertiseAddrLAN":"tcp://127.0.0.1:8301"'
    ',"SerfAdvertiseAddrWAN":"tcp://127.0.0.1:8302","SerfBindAddrLAN":"tcp://127.0.0.1:8301"'
    ',"SerfBindAddrWAN":"tcp://127.0.0.1:8302","SerfPortLAN":8301,"SerfPortWAN":8302'
    ',"ServerMode":true,"ServerName":"","ServerPort":8300,"Services":[],"SessionTTLMin":"0s"'
    ',"SkipLeaveOnInt":true,"StartJoinAddrsLAN":[],"StartJoinAddrsWAN":[]'
    ',"SyncCoordinateIntervalMin":"15s","SyncCoordinateRateTarget":64'
    ',"SyslogFacility":"LOCAL0","TLSCipherSuites":[],"TLSMinVersion":"tls10"'
    ',"TLSPreferServerCipherSuites":false,"TaggedAddresses":{"lan":"127.0.0.1"'
    ',"wan":"127.0.0.1"},"Telemetry":{"AllowedPrefixes":[],"BlockedPrefixes":[]'
    ',"CirconusAPIApp":"","CirconusAPIToken":"hidden","CirconusAPIURL":""'
    ',"CirconusBrokerID":"","CirconusBrokerSelectTag":"","CirconusCheckDisplayName":""'
    ',"CirconusCheckForceMetricActivation":"","CirconusCheckID":""'
    ',"CirconusCheckInstanceID":"","CirconusCheckSearchTag":"","CirconusCheckTags":""'
    ',"CirconusSubmissionInterval":"","CirconusSubmissionURL":"","DisableHostname":false'
    ',"DogstatsdAddr":"","DogstatsdTags":[],"FilterDefault":true,"MetricsPrefix":"consul"'
    ',"PrometheusRetentionTime":"0s","StatsdAddr":"","StatsiteAddr":""}'
    ',"TranslateWANAddrs":false,"UIDir":"","UnixSocketGroup":"","UnixSocketMode":""'
    ',"UnixSocketUser":"","VerifyIncoming":false,"VerifyIncomingHTTPS":false'
    ',"VerifyIncomingRPC":false,"VerifyOutgoing":false,"VerifyServerHostname":false'
    ',"Version":"1.4.0","VersionPrerelease":"","Watches":[]},"Member":{"Addr":"127.0.0.1"'
    ',"DelegateCur":4,"DelegateMax":5,"DelegateMin":2,"Name":"u1","Port":8301,"ProtocolCur":2'
    ',"ProtocolMax":5,"ProtocolMin":1,"Status":1,"Tags":{"acls":"0","build":"1.4.0:"'
    ',"dc":"dc1","id":"8a4da61d-c21f-0856-c59e-f0cc61308fdb","port":"8300","raft_vsn":"3"'
    ',"role":"consul","segment":"","vsn":"2","vsn_max":"3","vsn_min":"2"'
    ',"wan_join_port":"8302"}},"Meta":{"consul-network-segment":""}'
    ',"Stats":{"agent":{"check_monitors":"0","check_ttls":"1","checks":"7","services":"6"}'
    ',"build":{"prerelease":"","revision":"","version":"1.4.0"},"consul":{"acl":"disabled"'
    ',"bootstrap":"false","known_datacenters":"1","leader":"true"'
    ',"leader_addr":"127.0.0.1:8300","server":"true"},"raft":{"applied_index":"40"'
    ',"commit_index":"40","fsm_pending":"0","last_contact":"0","last_log_index":"40"'
    ',"last_log_term":"2","last_snapshot_index":"0","last_snapshot_term":"0"'
    ',"latest_configuration":"[{Suffrage:Voter ID:8a4da61d-c21f-0856-c59e-f0cc61308fdb'
    ' Address:127.0.0.1:8300}]"'
    ',"latest_configuration_index":"1","num_peers":"0","protocol_version":"3"'
    ',"protocol_version_max":"3","protocol_version_min":"0","snapshot_version_max":"1"'
    ',"snapshot_version_min":"0","state":"Leader","term":"2"},"runtime":{"arch":"amd64"'
    ',"cpu_count":"2","goroutines":"87","max_procs":"2","os":"linux","version":"go1.19.8"}'
    ',"serf_lan":{"coordinate_resets":"0","encrypted":"false","event_queue":"1"'
    ',"event_time":"2","failed":"0","health_score":"0","intent_queue":"0","left":"0"'
    ',"member_time":"1","members":"1","query_queue":"0","query_time":"1"}'
    ',"serf_wan":{"coordinate_resets":"0","encrypted":"false","event_queue":"0"'
    ',"event_time":"1","failed":"0","health_score":"0","intent_queue":"0","left":"0"'
    ',"member_time":"1","members":"1","query_queue":"0","query_time":"1"}}}'
)


def agent_self(*, name: str, node_id: str, address: str, datacenter: str, server: bool,
               leader: bool, leader_address: str, acl_enabled: bool, index: int,
               counts: dict[str, int], version: str = "1.4.0") -> dict:
    """``version`` as the lab plays it ("1.16.2+ent"). Where a real Enterprise agent names its
    edition is not recorded here (newer agents have ``Config.VersionMetadata``); the lab puts
    "ent" there and keeps the ``+ent`` suffix in ``Config.Version`` too, and the product
    accepts either."""
    body = json.loads(_RECORDED)
    plain, _, metadata = version.partition("+")
    body["Config"].update(Datacenter=datacenter, NodeName=name, NodeID=node_id, Server=server,
                          Version=version if metadata else plain)
    if metadata:
        body["Config"]["VersionMetadata"] = metadata
    debug = body["DebugConfig"]
    debug.update(
        NodeName=name, NodeID=node_id, Datacenter=datacenter, ServerMode=server, DevMode=False,
        ACLsEnabled=acl_enabled, AdvertiseAddrLAN=address, AdvertiseAddrWAN=address,
        BindAddr=address, TaggedAddresses={"lan": address, "wan": address},
        RPCAdvertiseAddr=f"tcp://{address}:8300", RPCBindAddr=f"tcp://{address}:8300",
        SerfAdvertiseAddrLAN=f"tcp://{address}:8301", SerfBindAddrLAN=f"tcp://{address}:8301",
        SerfAdvertiseAddrWAN=f"tcp://{address}:8302", SerfBindAddrWAN=f"tcp://{address}:8302",
        Version=version,
    )
    body["Member"] = member(name=name, node_id=node_id, address=address, datacenter=datacenter,
                            server=server, acl_enabled=acl_enabled)
    stats = body["Stats"]
    stats["agent"].update({key: str(value) for key, value in counts.items()})
    stats["consul"].update(
        acl="enabled" if acl_enabled else "disabled", server=str(server).lower(),
        leader=str(leader).lower(), leader_addr=f"{leader_address}:8300",
    )
    for key in ("applied_index", "commit_index", "last_log_index"):
        stats["raft"][key] = str(index)
    stats["raft"]["state"] = "Leader" if leader else "Follower"
    return body


def member(*, name: str, node_id: str, address: str, datacenter: str, server: bool,
           acl_enabled: bool) -> dict:
    """A serf LAN member as /v1/agent/members and /v1/agent/self show it."""
    tags = {
        "acls": "1" if acl_enabled else "0", "build": "1.4.0:", "dc": datacenter, "id": node_id,
        "segment": "", "vsn": "2", "vsn_max": "3", "vsn_min": "2",
    }
    if server:
        tags.update({"role": "consul", "port": "8300", "raft_vsn": "3", "wan_join_port": "8302"})
    else:
        tags["role"] = "node"
    return {
        "Name": name, "Addr": address, "Port": 8301, "Tags": tags, "Status": 1,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    }
