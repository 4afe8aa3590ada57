//! The group directory: CREATE_GROUP, LIST_GROUPS / GROUP_LIST, JOIN_GROUP, LEAVE_GROUP
//! and GROUP_MEMBERS / MEMBER_LIST. Posting to a group is a PUBLISH with scope group.

use bytes::{Bytes, BytesMut};

use super::{
    Encode, cursor_len, for_each_field, for_each_record, list_request, read_cursor, records_len,
    required, text_len, write_cursor, write_page_request,
};
use crate::error::ProtoError;
use crate::fields::{FieldWriter, key};
use crate::frame::{Frame, FrameType};
use crate::text::Text;

/// Creates a group in the directory; answered by OK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateGroup {
    pub name: Text,
    pub description: Text,
}

impl CreateGroup {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = CreateGroup::default();
        let mut name = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => name = Some(field.text()?),
                key::DESCRIPTION => packet.description = field.text()?,
                _ => {}
            }
            Ok(())
        })?;
        packet.name = required(name, FrameType::CreateGroup, "group")?;
        Ok(packet)
    }
}

impl Encode for CreateGroup {
    fn frame_type(&self) -> FrameType {
        FrameType::CreateGroup
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.name);
        if !self.description.is_empty() {
            fields.text(key::DESCRIPTION, &self.description);
        }
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.name) + text_len(&self.description)
    }
}

list_request! {
    /// Asks for a page of the directory of groups, in name order.
    ListGroups => ListGroups
}

/// One entry of the group directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupInfo {
    pub name: Text,
    pub description: Text,
    pub member_count: u64,
}

/// The answer to LIST_GROUPS: one page, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupList {
    pub groups: Vec<GroupInfo>,
    /// Present when more groups follow: the cursor of the next page.
    pub next: Option<Bytes>,
}

impl GroupInfo {
    /// At most what this entry takes in a GROUP_LIST's content.
    pub fn record_len(&self) -> usize {
        2 + text_len(&self.name) + text_len(&self.description) + 12
    }
}

impl GroupList {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let groups = for_each_record(&frame.content, |record| {
            let mut info = GroupInfo::default();
            for field in record {
                let field = field?;
                match field.key {
                    key::CHANNEL => info.name = field.text()?,
                    key::DESCRIPTION => info.description = field.text()?,
                    key::MEMBER_COUNT => info.member_count = field.uint()?,
                    _ => {}
                }
            }
            Ok(info)
        })?;
        Ok(GroupList {
            groups,
            next: read_cursor(frame)?,
        })
    }
}

impl Encode for GroupList {
    fn frame_type(&self) -> FrameType {
        FrameType::GroupList
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        write_cursor(fields, self.next.as_ref());
    }
    fn fields_len_hint(&self) -> usize {
        cursor_len(self.next.as_ref())
    }
    fn write_content(&self, dst: &mut BytesMut) {
        let mut fields = FieldWriter::new(dst);
        for group in &self.groups {
            fields.record(|fields| {
                fields
                    .text(key::CHANNEL, &group.name)
                    .text(key::DESCRIPTION, &group.description)
                    .uint(key::MEMBER_COUNT, group.member_count);
            });
        }
    }
    fn content_len(&self) -> usize {
        records_len(&self.groups, |group| {
            text_len(&group.name) + text_len(&group.description) + 12
        })
    }
}

/// Declares a request that names one group.
macro_rules! group_request {
    ($(#[$doc:meta])* $name:ident => $frame:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            pub group: Text,
        }

        impl $name {
            pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
                let mut group = None;
                for_each_field(&frame.headers, |field| {
                    if field.key == key::CHANNEL {
                        group = Some(field.text()?);
                    }
                    Ok(())
                })?;
                Ok($name {
                    group: required(group, FrameType::$frame, "group")?,
                })
            }
        }

        impl Encode for $name {
            fn frame_type(&self) -> FrameType {
                FrameType::$frame
            }
            fn write_fields(&self, fields: &mut FieldWriter<'_>) {
                fields.text(key::CHANNEL, &self.group);
            }
            fn fields_len_hint(&self) -> usize {
                text_len(&self.group)
            }
        }
    };
}

group_request! {
    /// Joins a group under the session's name; answered by OK. Membership outlives the
    /// connection.
    JoinGroup => JoinGroup
}

group_request! {
    /// Leaves a group; answered by OK.
    LeaveGroup => LeaveGroup
}

group_request! {
    /// Deletes a group: its history, its members and its directory entry; answered by
    /// OK. Every member's sessions get an EVENT `GROUP_DELETED`.
    DeleteGroup => DeleteGroup
}

/// Asks for a page of the members of a group, in name order (cursor and limit as in
/// the LIST requests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMembers {
    pub group: Text,
    /// The `next` of the previous page's reply; none for the first page.
    pub cursor: Option<Bytes>,
    /// Most members wanted in this page (the server may send fewer).
    pub limit: Option<u64>,
}

impl GroupMembers {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut packet = GroupMembers::default();
        let mut group = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => group = Some(field.text()?),
                key::CURSOR => packet.cursor = Some(field.bytes()),
                key::LIMIT => packet.limit = Some(field.uint()?),
                _ => {}
            }
            Ok(())
        })?;
        packet.group = required(group, FrameType::GroupMembers, "group")?;
        Ok(packet)
    }
}

impl Encode for GroupMembers {
    fn frame_type(&self) -> FrameType {
        FrameType::GroupMembers
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.group);
        write_page_request(fields, self.cursor.as_ref(), self.limit);
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.group) + cursor_len(self.cursor.as_ref()) + 12
    }
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberInfo {
    pub name: Text,
    /// Whether a session with this name is connected now.
    pub online: bool,
}

/// The answer to GROUP_MEMBERS: one page, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberList {
    pub group: Text,
    pub members: Vec<MemberInfo>,
    /// Present when more members follow: the cursor of the next page.
    pub next: Option<Bytes>,
}

impl MemberInfo {
    /// At most what this entry takes in a MEMBER_LIST's content.
    pub fn record_len(&self) -> usize {
        2 + text_len(&self.name) + 3
    }
}

impl MemberList {
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtoError> {
        let mut group = Text::default();
        let mut next = None;
        for_each_field(&frame.headers, |field| {
            match field.key {
                key::CHANNEL => group = field.text()?,
                key::CURSOR => next = Some(field.bytes()),
                _ => {}
            }
            Ok(())
        })?;
        let members = for_each_record(&frame.content, |record| {
            let mut info = MemberInfo::default();
            for field in record {
                let field = field?;
                match field.key {
                    key::CLIENT_NAME => info.name = field.text()?,
                    key::ONLINE => info.online = field.uint()? != 0,
                    _ => {}
                }
            }
            Ok(info)
        })?;
        Ok(MemberList {
            group,
            members,
            next,
        })
    }
}

impl Encode for MemberList {
    fn frame_type(&self) -> FrameType {
        FrameType::MemberList
    }
    fn write_fields(&self, fields: &mut FieldWriter<'_>) {
        fields.text(key::CHANNEL, &self.group);
        write_cursor(fields, self.next.as_ref());
    }
    fn write_content(&self, dst: &mut BytesMut) {
        let mut fields = FieldWriter::new(dst);
        for member in &self.members {
            fields.record(|fields| {
                fields
                    .text(key::CLIENT_NAME, &member.name)
                    .uint(key::ONLINE, u64::from(member.online));
            });
        }
    }
    fn content_len(&self) -> usize {
        records_len(&self.members, |member| text_len(&member.name) + 3)
    }
    fn fields_len_hint(&self) -> usize {
        text_len(&self.group) + cursor_len(self.next.as_ref())
    }
}
